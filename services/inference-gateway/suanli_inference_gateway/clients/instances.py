"""The scheduler's instances as the gateway sees them (domain dataclasses, no protobuf past here).
Errors need no translation: the channel's interceptor raises the scheduler's `SuanliError`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.proto.suanli.v1 import scheduler_pb2_grpc

IDEMPOTENT_METHODS = ("GetInstance", "ListInstances", "StopInstance", "StartInstance", "DeleteInstance")


class InstanceKind(enum.StrEnum):
    jupyterlab = "jupyterlab"
    llamafactory = "llamafactory"
    tensorboard = "tensorboard"


class InstanceStatus(enum.StrEnum):
    queued = "queued"
    starting = "starting"
    running = "running"
    stopping = "stopping"
    stopped = "stopped"
    failed = "failed"
    deleted = "deleted"


_STATUS_FROM_PB = {
    pb.INSTANCE_STATUS_QUEUED: InstanceStatus.queued,
    pb.INSTANCE_STATUS_STARTING: InstanceStatus.starting,
    pb.INSTANCE_STATUS_RUNNING: InstanceStatus.running,
    pb.INSTANCE_STATUS_STOPPING: InstanceStatus.stopping,
    pb.INSTANCE_STATUS_STOPPED: InstanceStatus.stopped,
    pb.INSTANCE_STATUS_FAILED: InstanceStatus.failed,
    pb.INSTANCE_STATUS_DELETED: InstanceStatus.deleted,
}


@dataclass(frozen=True, slots=True)
class Mount:
    kind: str  # model | dataset | adapter | job | instance
    id: str
    name: str  # its file or folder name under the instance's <kind>s/ (TensorBoard: the run name)
    source: str = ""  # where the agent copies it from (models, datasets, adapters)


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    name: str
    kind: InstanceKind
    cpu_millis: int
    memory_mb: int
    gpus: int = 0
    gpu_type: str = ""
    storage_gb: int = 0
    mounts: tuple[Mount, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    owner_id: str
    spec: InstanceSpec
    status: InstanceStatus
    status_reason: str
    job_id: str
    node_id: str
    endpoint: str  # host:port of its server while running
    token: str  # the server's own token, added to proxied requests
    base_url: str
    storage_path: str
    created_at: datetime
    started_at: datetime | None


class InstancesApi(Protocol):
    async def create(self, owner_id: str, spec: InstanceSpec) -> Instance: ...
    async def get(self, caller_id: str, instance_id: str) -> Instance: ...
    async def list(self, caller_id: str) -> list[Instance]: ...
    async def stop(self, caller_id: str, instance_id: str) -> Instance: ...
    async def start(self, caller_id: str, instance_id: str) -> Instance: ...
    async def delete(self, caller_id: str, instance_id: str) -> Instance: ...


def _mount_pb(mount: Mount) -> pb.InstanceMount:
    return pb.InstanceMount(kind=mount.kind, id=mount.id, name=mount.name, source=mount.source)


def _instance(msg: pb.Instance) -> Instance:
    spec = msg.spec
    return Instance(
        id=msg.id,
        owner_id=msg.owner_id,
        spec=InstanceSpec(
            name=spec.name,
            kind=InstanceKind(spec.kind),
            cpu_millis=spec.cpu_millis,
            memory_mb=spec.memory_mb,
            gpus=spec.gpus,
            gpu_type=spec.gpu_type,
            storage_gb=spec.storage_gb,
            mounts=tuple(Mount(m.kind, m.id, m.name, m.source) for m in spec.mounts),
        ),
        status=_STATUS_FROM_PB.get(msg.status, InstanceStatus.queued),
        status_reason=msg.status_reason,
        job_id=msg.job_id,
        node_id=msg.node_id,
        endpoint=msg.endpoint,
        token=msg.token,
        base_url=msg.base_url,
        storage_path=msg.storage_path,
        created_at=msg.created_at.ToDatetime(UTC),
        started_at=msg.started_at.ToDatetime(UTC) if msg.HasField("started_at") else None,
    )


class InstancesClient:
    """`InstancesApi` over the scheduler's gRPC channel."""

    def __init__(self, stub: scheduler_pb2_grpc.SchedulerServiceStub) -> None:
        self._stub = stub

    async def create(self, owner_id: str, spec: InstanceSpec) -> Instance:
        message = pb.InstanceSpec(
            name=spec.name,
            kind=spec.kind.value,
            cpu_millis=spec.cpu_millis,
            memory_mb=spec.memory_mb,
            gpus=spec.gpus,
            gpu_type=spec.gpu_type,
            storage_gb=spec.storage_gb,
            mounts=[_mount_pb(m) for m in spec.mounts],
        )
        return _instance(
            await self._stub.CreateInstance(pb.CreateInstanceRequest(owner_id=owner_id, spec=message))
        )

    async def get(self, caller_id: str, instance_id: str) -> Instance:
        request = pb.GetInstanceRequest(caller_id=caller_id, instance_id=instance_id)
        return _instance(await self._stub.GetInstance(request))

    async def list(self, caller_id: str) -> list[Instance]:
        response = await self._stub.ListInstances(pb.ListInstancesRequest(caller_id=caller_id))
        return [_instance(i) for i in response.instances]

    async def stop(self, caller_id: str, instance_id: str) -> Instance:
        request = pb.StopInstanceRequest(caller_id=caller_id, instance_id=instance_id)
        return _instance(await self._stub.StopInstance(request))

    async def start(self, caller_id: str, instance_id: str) -> Instance:
        request = pb.StartInstanceRequest(caller_id=caller_id, instance_id=instance_id)
        return _instance(await self._stub.StartInstance(request))

    async def delete(self, caller_id: str, instance_id: str) -> Instance:
        request = pb.DeleteInstanceRequest(caller_id=caller_id, instance_id=instance_id)
        return _instance(await self._stub.DeleteInstance(request))
