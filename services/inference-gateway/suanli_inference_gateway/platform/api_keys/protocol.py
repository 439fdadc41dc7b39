"""Wire models of /api/v1/api-keys."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from suanli_inference_gateway.clients.auth import ApiKey, CreatedApiKey
from suanli_inference_gateway.platform.protocol import RequestModel, optional_unix_seconds, unix_seconds


class CreateApiKeyRequest(RequestModel):
    name: str = Field(min_length=1, max_length=128, description="A label to recognise the key by")


class ApiKeyObject(BaseModel):
    """A key as listed: never its secret."""

    id: str
    object: Literal["api_key"] = "api_key"
    name: str
    prefix: str = Field(description="The first characters of the key")
    created_at: int
    last_used_at: int | None
    revoked_at: int | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyObject:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            created_at=unix_seconds(key.created_at),
            last_used_at=optional_unix_seconds(key.last_used_at),
            revoked_at=optional_unix_seconds(key.revoked_at),
        )


class CreatedApiKeyObject(BaseModel):
    """A new key, with its secret: the only time the secret is shown."""

    id: str
    object: Literal["api_key"] = "api_key"
    name: str
    key: str
    prefix: str
    created_at: int

    @classmethod
    def of(cls, created: CreatedApiKey) -> CreatedApiKeyObject:
        key = created.api_key
        return cls(
            id=key.id,
            name=key.name,
            key=created.key,
            prefix=key.prefix,
            created_at=unix_seconds(key.created_at),
        )


class ApiKeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ApiKeyObject]
