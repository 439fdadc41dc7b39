"""/api/v1/quotas (the caller's, with what is in use) and, for admins, setting a user's quota."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from suanli_inference_gateway.authentication.dependency import require_admin, require_principal
from suanli_inference_gateway.clients.auth import Principal, Quota
from suanli_inference_gateway.dependencies import gateway_deps
from suanli_inference_gateway.platform.gpus.inventory import require_known_gpu_types
from suanli_inference_gateway.platform.quotas.protocol import (
    QuotaObject,
    QuotaStatusList,
    QuotaStatusObject,
    SetQuotaRequest,
)
from suanli_inference_gateway.platform.usage.storage import STORAGE_BYTES, stored_bytes

router = APIRouter(tags=["quotas"])

GPU_PREFIX = "gpu:"


@router.get("/quotas", response_model=QuotaStatusList)
async def list_quotas(request: Request, principal: Principal = Depends(require_principal)) -> QuotaStatusList:
    """The caller's quotas with what is in use now; a resource without a quota is not limited."""
    deps = gateway_deps(request)
    statuses = await deps.auth.get_quota_status(principal.user_id)
    # Auth does not hold the files: the catalog says what is stored, asked only when it matters.
    storage = None
    if any(s.resource == STORAGE_BYTES for s in statuses):
        storage = await stored_bytes(deps.catalog, principal.user_id)
    return QuotaStatusList(
        data=[QuotaStatusObject.of(s, storage if s.resource == STORAGE_BYTES else s.used) for s in statuses]
    )


@router.put("/admin/users/{user_id}/quotas/{resource}", response_model=QuotaObject)
async def set_quota(
    user_id: str,
    resource: str,
    body: SetQuotaRequest,
    request: Request,
    admin: Principal = Depends(require_admin),
) -> QuotaObject:
    """Admins: set a user's quota of a resource: "tokens_per_day", "storage_bytes" or
    "gpu:<type>" (a type of the cluster's inventory, or "*" for all)."""
    deps = gateway_deps(request)
    resource = resource.strip()
    if resource.startswith(GPU_PREFIX) and (gpu_type := resource.removeprefix(GPU_PREFIX)):
        await require_known_gpu_types(deps.scheduler, [gpu_type], param="resource")
    quota = await deps.auth.set_quota(
        admin.user_id, Quota(user_id=user_id, resource=resource, limit=body.limit)
    )
    return QuotaObject.of(quota)
