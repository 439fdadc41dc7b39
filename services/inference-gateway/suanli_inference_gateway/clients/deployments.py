"""Deployments as the gateway and the serving controller see them: the scheduler owns them (and
the GPU slots they hold); these are its gRPC calls and the domain dataclasses they return."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.proto.suanli.v1 import scheduler_pb2_grpc
from suanli_common.telemetry import annotate

# Create is retried too (the scheduler keeps one per owner and client_request_id), and a report
# said twice changes nothing.
IDEMPOTENT_METHODS = (
    "CreateDeployment",
    "GetDeployment",
    "ListDeployments",
    "DeleteDeployment",
    "ReportDeployment",
)


class DeploymentStatus(enum.StrEnum):
    pending = "pending"
    deploying = "deploying"
    ready = "ready"
    failed = "failed"
    stopping = "stopping"
    stopped = "stopped"


_STATUS_FROM_PB = {
    pb.DEPLOYMENT_STATUS_PENDING: DeploymentStatus.pending,
    pb.DEPLOYMENT_STATUS_DEPLOYING: DeploymentStatus.deploying,
    pb.DEPLOYMENT_STATUS_READY: DeploymentStatus.ready,
    pb.DEPLOYMENT_STATUS_FAILED: DeploymentStatus.failed,
    pb.DEPLOYMENT_STATUS_STOPPING: DeploymentStatus.stopping,
    pb.DEPLOYMENT_STATUS_STOPPED: DeploymentStatus.stopped,
}
_STATUS_TO_PB = {v: k for k, v in _STATUS_FROM_PB.items()}


# A deployment serves one adapter at most: its name inside the engine is fixed.
ENGINE_ADAPTER_NAME = "adapter"


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    model_id: str
    model_path: str
    served_model: str
    adapter_id: str = ""
    adapter_path: str = ""
    gpu_type: str = ""
    gpu_count: int = 1
    min_replicas: int = 1
    max_replicas: int = 1
    max_model_len: int = 0
    public: bool = False

    @property
    def engine_base(self) -> str:
        """The base model's name inside its Ray Serve app. Ray Serve LLM reads `base:adapter` into
        a name with a colon, so a fine-tune's id (`ft:base:suffix:job`) is served colon-free."""
        return self.served_model.replace(":", "--")

    @property
    def engine_model(self) -> str:
        """The name requests carry to the engine (the gateway renames it in requests and answers):
        the base's, or `base:adapter` for a LoRA adapter, which Ray Serve LLM routes to the base's
        replicas and vLLM answers with the adapter applied."""
        return f"{self.engine_base}:{ENGINE_ADAPTER_NAME}" if self.adapter_path else self.engine_base


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    owner_id: str
    spec: DeploymentSpec
    status: DeploymentStatus
    status_reason: str = ""
    gpu_type: str = ""
    node_ids: tuple[str, ...] = ()
    endpoint: str = ""
    ready_replicas: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


def deployment_of(msg: pb.Deployment) -> Deployment:
    spec = msg.spec
    return Deployment(
        id=msg.id,
        owner_id=msg.owner_id,
        spec=DeploymentSpec(
            model_id=spec.model_id,
            model_path=spec.model_path,
            served_model=spec.served_model,
            adapter_id=spec.adapter_id,
            adapter_path=spec.adapter_path,
            gpu_type=spec.gpu_type,
            gpu_count=spec.gpu_count,
            min_replicas=spec.min_replicas,
            max_replicas=spec.max_replicas,
            max_model_len=spec.max_model_len,
            public=spec.public,
        ),
        status=_STATUS_FROM_PB.get(msg.status, DeploymentStatus.pending),
        status_reason=msg.status_reason,
        gpu_type=msg.gpu_type,
        node_ids=tuple(msg.node_ids),
        endpoint=msg.endpoint,
        ready_replicas=msg.ready_replicas,
        created_at=msg.created_at.ToDatetime(UTC) if msg.HasField("created_at") else None,
        updated_at=msg.updated_at.ToDatetime(UTC) if msg.HasField("updated_at") else None,
    )


def _spec_pb(spec: DeploymentSpec) -> pb.DeploymentSpec:
    return pb.DeploymentSpec(
        model_id=spec.model_id,
        model_path=spec.model_path,
        adapter_id=spec.adapter_id,
        adapter_path=spec.adapter_path,
        served_model=spec.served_model,
        gpu_type=spec.gpu_type,
        gpu_count=spec.gpu_count,
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        max_model_len=spec.max_model_len,
        public=spec.public,
    )


class DeploymentsApi(Protocol):
    async def create(self, owner_id: str, client_request_id: str, spec: DeploymentSpec) -> Deployment: ...
    async def get(self, caller_id: str, deployment_id: str) -> Deployment: ...
    async def list(self, caller_id: str, include_public: bool = False) -> list[Deployment]: ...
    async def delete(self, caller_id: str, deployment_id: str) -> Deployment: ...
    async def report(
        self,
        deployment_id: str,
        status: DeploymentStatus,
        *,
        reason: str = "",
        endpoint: str = "",
        ready_replicas: int = 0,
    ) -> Deployment: ...


class DeploymentsClient:
    """`DeploymentsApi` over the scheduler's gRPC channel. A caller id of "" is a service asking."""

    def __init__(self, stub: scheduler_pb2_grpc.SchedulerServiceStub) -> None:
        self._stub = stub

    async def create(self, owner_id: str, client_request_id: str, spec: DeploymentSpec) -> Deployment:
        request = pb.CreateDeploymentRequest(
            owner_id=owner_id, client_request_id=client_request_id, spec=_spec_pb(spec)
        )
        deployment = deployment_of(await self._stub.CreateDeployment(request))
        annotate({"suanli.deployment.id": deployment.id, "gen_ai.request.model": spec.served_model})
        return deployment

    async def get(self, caller_id: str, deployment_id: str) -> Deployment:
        request = pb.GetDeploymentRequest(caller_id=caller_id, deployment_id=deployment_id)
        return deployment_of(await self._stub.GetDeployment(request))

    async def list(self, caller_id: str, include_public: bool = False) -> list[Deployment]:
        request = pb.ListDeploymentsRequest(caller_id=caller_id, include_public=include_public)
        response = await self._stub.ListDeployments(request)
        return [deployment_of(d) for d in response.deployments]

    async def delete(self, caller_id: str, deployment_id: str) -> Deployment:
        request = pb.DeleteDeploymentRequest(caller_id=caller_id, deployment_id=deployment_id)
        return deployment_of(await self._stub.DeleteDeployment(request))

    async def report(
        self,
        deployment_id: str,
        status: DeploymentStatus,
        *,
        reason: str = "",
        endpoint: str = "",
        ready_replicas: int = 0,
    ) -> Deployment:
        request = pb.ReportDeploymentRequest(
            deployment_id=deployment_id,
            status=_STATUS_TO_PB[status],
            reason=reason,
            endpoint=endpoint,
            ready_replicas=ready_replicas,
        )
        return deployment_of(await self._stub.ReportDeployment(request))
