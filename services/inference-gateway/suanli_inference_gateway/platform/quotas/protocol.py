"""Wire models of /api/v1/quotas and /api/v1/admin/users/{user_id}/quotas/{resource}."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from suanli_inference_gateway.clients.auth import Quota, QuotaStatus
from suanli_inference_gateway.platform.protocol import RequestModel, optional_unix_seconds

MAX_LIMIT = 2**63 - 1  # auth stores an int64

RESOURCE_DESCRIPTION = (
    '"tokens_per_day" (input and output tokens per UTC day), "storage_bytes" (files and own models), '
    '"gpu:<type>" (GPU slots held at once; "gpu:*": of every type together)'
)


class QuotaStatusObject(BaseModel):
    object: Literal["quota"] = "quota"
    resource: str = Field(description=RESOURCE_DESCRIPTION)
    limit: int
    used: int | None = Field(
        description="In use now: tokens today, GPU slots being metered (running jobs, deployments "
        "until deleted; the scheduler also counts slots of jobs still preparing), bytes stored (null "
        "when the catalog cannot say right now)"
    )
    resets_at: int | None = Field(None, description="tokens_per_day: when the count starts over (Unix time)")

    @classmethod
    def of(cls, status: QuotaStatus, used: int | None) -> QuotaStatusObject:
        return cls(
            resource=status.resource,
            limit=status.limit,
            used=used,
            resets_at=optional_unix_seconds(status.resets_at),
        )


class QuotaStatusList(BaseModel):
    object: Literal["list"] = "list"
    data: list[QuotaStatusObject]


class SetQuotaRequest(RequestModel):
    limit: int = Field(
        ge=0, le=MAX_LIMIT, strict=True, description="0 or more; below what is in use now is allowed"
    )


class QuotaObject(BaseModel):
    object: Literal["quota"] = "quota"
    user_id: str
    resource: str = Field(description=RESOURCE_DESCRIPTION)
    limit: int

    @classmethod
    def of(cls, quota: Quota) -> QuotaObject:
        return cls(user_id=quota.user_id, resource=quota.resource, limit=quota.limit)
