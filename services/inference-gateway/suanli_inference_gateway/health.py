"""`/healthz` (the process is up) and `/readyz` (NATS and the services the gateway needs answer)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from suanli_common.logging import get_logger
from suanli_inference_gateway.dependencies import ReadyCheck, gateway_deps

log = get_logger(__name__)

router = APIRouter(include_in_schema=False)


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
