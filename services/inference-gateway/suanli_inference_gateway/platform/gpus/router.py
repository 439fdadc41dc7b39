"""/api/v1/gpus: the cluster's GPU slots, through the scheduler's ledger (live nodes only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from suanli_common.errors import Unavailable
from suanli_inference_gateway.authentication.dependency import require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.dependencies import gateway_deps
from suanli_inference_gateway.platform.gpus.protocol import GpuInventory

router = APIRouter(prefix="/gpus", tags=["gpus"])


@router.get("", response_model=GpuInventory)
async def list_gpus(request: Request, _: Principal = Depends(require_principal)) -> GpuInventory:
    scheduler = gateway_deps(request).scheduler
    if scheduler is None:
        raise Unavailable("the GPU inventory is not available on this gateway")
    return GpuInventory.of(await scheduler.list_gpus())
