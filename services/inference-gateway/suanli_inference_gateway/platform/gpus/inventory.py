"""Which GPU types the cluster has: what admin settings naming a GPU type (a quota, a price) are
checked against, so that a typo is refused instead of silently limiting or pricing nothing."""

from __future__ import annotations

from collections.abc import Iterable

from suanli_common.errors import InvalidRequest, Unavailable
from suanli_inference_gateway.clients.scheduler import SchedulerApi

ANY_GPU_TYPE = "*"


async def require_known_gpu_types(
    scheduler: SchedulerApi | None, gpu_types: Iterable[str], *, param: str
) -> None:
    """Nothing when each type is "*" or a type some live node has; 400 `unknown_gpu_type` otherwise."""
    named = sorted(set(gpu_types) - {ANY_GPU_TYPE})
    if not named:
        return
    if scheduler is None:
        raise Unavailable("the GPU inventory is not available on this gateway to check the GPU type")
    known = sorted({slots.gpu_type for slots in await scheduler.list_gpus()})
    unknown = [gpu_type for gpu_type in named if gpu_type not in known]
    if unknown:
        listed = ", ".join(known) if known else "none yet"
        raise InvalidRequest(
            f"unknown GPU type {unknown[0]!r}: the cluster has {listed} (GET /api/v1/gpus); "
            f'"{ANY_GPU_TYPE}" stands for every type',
            param=param,
            code="unknown_gpu_type",
        )
