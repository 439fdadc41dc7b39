"""/api/v1/instances: the dev lab. Instances are the scheduler's (each run is a job its agents
run); the gateway checks their mounts with the catalog and serves them under /instances/{id}/
(`proxy.py`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import StreamingResponse

from suanli_inference_gateway.authentication.dependency import require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.clients.instances import InstanceKind, InstancesApi, InstanceSpec
from suanli_inference_gateway.dependencies import (
    gateway_deps,
    require_instances,
    require_job_logs,
    require_scheduler,
)
from suanli_inference_gateway.platform.instances.mounts import resolve_mounts
from suanli_inference_gateway.platform.instances.protocol import (
    CreateInstanceRequest,
    InstanceList,
    InstanceObject,
)
from suanli_inference_gateway.platform.instances.proxy import SESSION_COOKIE
from suanli_inference_gateway.platform.jobs.logs import log_text

router = APIRouter(prefix="/instances", tags=["instances"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=InstanceObject)
async def create_instance(
    body: CreateInstanceRequest,
    request: Request,
    principal: Principal = Depends(require_principal),
    instances: InstancesApi = Depends(require_instances),
) -> InstanceObject:
    mounts = await resolve_mounts(gateway_deps(request).catalog, principal.user_id, body.mounts)
    spec = InstanceSpec(
        name=body.name,
        kind=InstanceKind(body.kind),
        cpu_millis=round(body.cpu * 1000),
        memory_mb=round(body.memory_gb * 1024),
        gpus=body.gpus,
        gpu_type=body.gpu_type or "",
        storage_gb=body.storage_gb,
        mounts=mounts,
    )
    return InstanceObject.of(await instances.create(principal.user_id, spec))


@router.get("", response_model=InstanceList)
async def list_instances(
    principal: Principal = Depends(require_principal),
    instances: InstancesApi = Depends(require_instances),
) -> InstanceList:
    return InstanceList(data=[InstanceObject.of(i) for i in await instances.list(principal.user_id)])


@router.get("/{instance_id}", response_model=InstanceObject)
async def get_instance(
    instance_id: str,
    principal: Principal = Depends(require_principal),
    instances: InstancesApi = Depends(require_instances),
) -> InstanceObject:
    return InstanceObject.of(await instances.get(principal.user_id, instance_id))


@router.post("/{instance_id}/stop", response_model=InstanceObject)
async def stop_instance(
    instance_id: str,
    request: Request,
    principal: Principal = Depends(require_principal),
    instances: InstancesApi = Depends(require_instances),
) -> InstanceObject:
    """Stops its server; the storage (workspace and mounts) stays for the next start."""
    stopped = await instances.stop(principal.user_id, instance_id)
    _forget(request, instance_id)
    return InstanceObject.of(stopped)


@router.post("/{instance_id}/start", response_model=InstanceObject)
async def start_instance(
    instance_id: str,
    principal: Principal = Depends(require_principal),
    instances: InstancesApi = Depends(require_instances),
) -> InstanceObject:
    return InstanceObject.of(await instances.start(principal.user_id, instance_id))


@router.delete("/{instance_id}", response_model=InstanceObject)
async def delete_instance(
    instance_id: str,
    request: Request,
    principal: Principal = Depends(require_principal),
    instances: InstancesApi = Depends(require_instances),
) -> InstanceObject:
    """Stops it and removes its storage."""
    deleted = await instances.delete(principal.user_id, instance_id)
    _forget(request, instance_id)
    return InstanceObject.of(deleted)


@router.post("/{instance_id}/session", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def open_session(
    instance_id: str,
    request: Request,
    principal: Principal = Depends(require_principal),
    instances: InstancesApi = Depends(require_instances),
) -> Response:
    """For browsers, which send no Authorization header when they open a page: sets a cookie with
    the caller's credential, sent only to /instances/{id}/ and only by this site."""
    instance = await instances.get(principal.user_id, instance_id)
    credential = request.headers["authorization"].partition(" ")[2].strip()
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.set_cookie(
        SESSION_COOKIE,
        credential,
        path=instance.base_url,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/{instance_id}/logs", response_class=StreamingResponse)
async def instance_logs(
    instance_id: str,
    request: Request,
    principal: Principal = Depends(require_principal),
    instances: InstancesApi = Depends(require_instances),
) -> StreamingResponse:
    """What its server printed in the current run, as text (why it failed, its startup)."""
    instance = await instances.get(principal.user_id, instance_id)
    job = await require_scheduler(request).get_job(principal.user_id, instance.job_id)
    return StreamingResponse(log_text(require_job_logs(request), job), media_type="text/plain; charset=utf-8")


def _forget(request: Request, instance_id: str) -> None:
    """This gateway's proxy stops serving the instance at once (others' within their cache's life)."""
    proxy = gateway_deps(request).instance_proxy
    if proxy is not None:
        proxy.forget(instance_id)
