"""Where a deployed model answers: the scheduler knows every deployment and its endpoint. The rag
service uses it for knowledge bases that embed with a deployed embedding model."""

from __future__ import annotations

from suanli_common.errors import FailedPrecondition
from suanli_common.proto.suanli.v1 import scheduler_pb2, scheduler_pb2_grpc

SCHEDULER_SERVICE = "suanli.v1.SchedulerService"
IDEMPOTENT_METHODS = ("ListDeployments",)


class DeployedModels:
    def __init__(self, stub: scheduler_pb2_grpc.SchedulerServiceStub) -> None:
        self._stub = stub

    async def endpoint(self, owner_id: str, model: str) -> str:
        """The base URL of a ready deployment serving `model` that `owner_id` may use."""
        response = await self._stub.ListDeployments(
            scheduler_pb2.ListDeploymentsRequest(caller_id=owner_id, include_public=True)
        )
        for deployment in response.deployments:
            if (
                deployment.spec.served_model == model
                and deployment.status == scheduler_pb2.DEPLOYMENT_STATUS_READY
                and deployment.endpoint
            ):
                return deployment.endpoint
        raise FailedPrecondition(
            f"the embedding model {model!r} has no ready deployment; deploy it first",
            param="embedding_model",
            code="model_not_deployed",
        )
