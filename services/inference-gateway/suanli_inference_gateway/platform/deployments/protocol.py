"""Wire shapes of /api/v1/deployments."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from suanli_inference_gateway.clients.deployments import Deployment
from suanli_inference_gateway.platform.protocol import RequestModel, optional_unix_seconds

MAX_REPLICAS = 16


class CreateDeploymentRequest(RequestModel):
    model: str = Field(
        min_length=1,
        description="A ready base, fine-tuned or embedding model of the repository, or a LoRA adapter "
        "(served on the base it was trained from)",
    )
    adapter: str | None = Field(
        None, description="A LoRA adapter of `model` to serve on top of it (vLLM applies it per request)"
    )
    gpu_type: str | None = Field(None, description="Slots of this type (e.g. `A100-80G`, `cpu`); default any")
    gpu_count: int = Field(1, ge=1, le=8, description="Slots per replica (tensor parallelism on GPUs)")
    min_replicas: int = Field(1, ge=1, le=MAX_REPLICAS)
    max_replicas: int | None = Field(None, ge=1, le=MAX_REPLICAS, description="Default: min_replicas")
    max_model_len: int | None = Field(None, ge=16, description="Context length; default the model's own")

    @model_validator(mode="after")
    def _replicas_in_order(self) -> CreateDeploymentRequest:
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must not be less than min_replicas")
        return self


class DeploymentObject(BaseModel):
    id: str
    object: Literal["deployment"] = "deployment"
    model: str = Field(description="The name to send as `model` to /v1/chat/completions")
    base_model: str
    adapter: str | None
    status: Literal["pending", "deploying", "ready", "failed", "stopping", "stopped"]
    status_reason: str | None
    gpu_type: str | None
    gpu_count: int
    min_replicas: int
    max_replicas: int
    ready_replicas: int
    max_model_len: int | None
    public: bool
    owned_by: str
    created_at: int | None
    updated_at: int | None

    @classmethod
    def of(cls, deployment: Deployment) -> DeploymentObject:
        spec = deployment.spec
        return cls(
            id=deployment.id,
            model=spec.served_model,
            base_model=spec.model_id,
            adapter=spec.adapter_id or None,
            status=deployment.status.value,
            status_reason=deployment.status_reason or None,
            gpu_type=deployment.gpu_type or spec.gpu_type or None,
            gpu_count=spec.gpu_count,
            min_replicas=spec.min_replicas,
            max_replicas=spec.max_replicas,
            ready_replicas=deployment.ready_replicas,
            max_model_len=spec.max_model_len or None,
            public=spec.public,
            owned_by="system" if spec.public else deployment.owner_id,
            created_at=optional_unix_seconds(deployment.created_at),
            updated_at=optional_unix_seconds(deployment.updated_at),
        )


class DeploymentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DeploymentObject]
