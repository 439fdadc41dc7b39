"""`/healthz` (the process is up) and `/readyz` (NATS and the services the gateway needs answer, and the
seed chat model is registered)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from suanli_common.logging import get_logger
from suanli_inference_gateway.clients.catalog import CatalogApi
from suanli_inference_gateway.dependencies import ReadyCheck, gateway_deps

log = get_logger(__name__)

router = APIRouter(include_in_schema=False)


# The seed models are owned by "system": asking as their owner sees them whatever their visibility.
SYSTEM_CALLER = "system"


def model_ready_check(catalog: CatalogApi, model_id: str) -> ReadyCheck:
    """Green once the catalog has `model_id` registered and `ready` (the seed chat model: a new
    user's first chat needs it); a missing, registering or failed model is not ready."""

    async def check() -> bool:
        model = await catalog.get_model(SYSTEM_CALLER, model_id)
        return model.state == "ready"

    return check


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _run_check(check: ReadyCheck, timeout: float) -> bool:
    try:
        return bool(await asyncio.wait_for(check(), timeout))
    except Exception:  # a check that fails in any way means "not ready", never a 500
        return False


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    checks = gateway_deps(request).ready_checks
    timeout: float = request.app.state.settings.ready_timeout_s
    names = list(checks)
    results = await asyncio.gather(*(_run_check(checks[name], timeout) for name in names))
    status = {name: ("ok" if ok else "unavailable") for name, ok in zip(names, results, strict=True)}
    down = [name for name, ok in zip(names, results, strict=True) if not ok]
    if down:
        log.warning("not ready", down=down)
        return JSONResponse({"status": "unavailable", "down": down, "checks": status}, status_code=503)
    return JSONResponse({"status": "ok", "checks": status})
