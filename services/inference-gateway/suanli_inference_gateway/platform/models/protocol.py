"""Wire models of /api/v1/models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from suanli_inference_gateway.clients.catalog import Model, ModelFile
from suanli_inference_gateway.platform.protocol import RequestModel, unix_seconds

ModelKind = Literal["base", "fine_tuned", "adapter", "embedding", "artifact"]
Visibility = Literal["private", "public"]


class RegisterModelRequest(RequestModel):
    source: str = Field(
        min_length=1,
        max_length=4096,
        description="'path:/dir' (or an absolute path) on the catalog's machine, or 'hf:org/name' "
        "from its local Hugging Face cache; admins only",
    )
    id: str | None = Field(
        None, max_length=128, description="The model's id (letters, digits, '._:/-'); default: one is made"
    )
    kind: ModelKind = "base"
    visibility: Visibility = "private"
    base_model_id: str | None = Field(None, max_length=128, description="Required for adapters")


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    kind: str
    state: str = Field(description="registering, ready or failed")
    visibility: str
    architecture: str
    parameter_count: int
    context_length: int
    source: str
    owner: str = Field(description="The owner's user id; 'system' for the models the platform brings")
    is_default: bool = Field(description="The platform's default chat model")
    base_model_id: str | None
    size_bytes: int
    error: str | None = Field(description="Why registration failed")
    created_at: int

    @classmethod
    def of(cls, model: Model) -> ModelObject:
        return cls(
            id=model.id,
            kind=model.kind,
            state=model.state,
            visibility=model.visibility,
            architecture=model.architecture,
            parameter_count=model.parameter_count,
            context_length=model.context_length,
            source=model.source,
            owner=model.owner_id,
            is_default=model.is_default,
            base_model_id=model.base_model_id or None,
            size_bytes=model.size_bytes,
            error=model.error or None,
            created_at=unix_seconds(model.created_at),
        )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


class ModelFileObject(BaseModel):
    path: str = Field(description="Relative to the model's folder")
    bytes: int

    @classmethod
    def of(cls, file: ModelFile) -> ModelFileObject:
        return cls(path=file.path, bytes=file.bytes)


class ModelFileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelFileObject]
