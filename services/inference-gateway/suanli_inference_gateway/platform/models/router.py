"""/api/v1/models: the model repository, through the catalog. Model ids may contain '/' and ':'
(`org/name`, `ft:...`), hence the `:path` parameters, and the routes with a suffix come first."""

from __future__ import annotations

import posixpath

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import StreamingResponse

from suanli_common.errors import InvalidRequest, PermissionDenied
from suanli_inference_gateway.authentication.dependency import require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.dependencies import gateway_deps
from suanli_inference_gateway.platform.models.protocol import (
    ModelDeleted,
    ModelFileList,
    ModelFileObject,
    ModelList,
    ModelObject,
    RegisterModelRequest,
)
from suanli_inference_gateway.streaming import attachment, stream_response

router = APIRouter(prefix="/models", tags=["models"])

# Sources that read the catalog machine's disk (or its hub cache): only an operator may name them.
ADMIN_SOURCES = ("path:", "/", "hf:")


def check_may_register(principal: Principal, source: str) -> None:
    if not source.startswith(ADMIN_SOURCES):
        # job: sources are registered by the platform itself when a fine-tune succeeds.
        raise InvalidRequest(
            f"unsupported model source {source!r}: use 'path:/dir' or 'hf:org/name'",
            param="source",
            code="invalid_model_source",
        )
    if principal.role != "admin":
        raise PermissionDenied(
            "Only an administrator may register a model from a path or the Hugging Face cache.",
            param="source",
            code="admin_only",
        )


@router.get("", response_model=ModelList)
async def list_models(request: Request, principal: Principal = Depends(require_principal)) -> ModelList:
    models = await gateway_deps(request).catalog.list_models(principal.user_id)
    return ModelList(data=[ModelObject.of(m) for m in models])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ModelObject)
async def register_model(
    body: RegisterModelRequest, request: Request, principal: Principal = Depends(require_principal)
) -> ModelObject:
    check_may_register(principal, body.source)
    model = await gateway_deps(request).catalog.register_model(
        principal.user_id,
        body.source,
        model_id=body.id or "",
        kind=body.kind,
        visibility=body.visibility,
        base_model_id=body.base_model_id or "",
    )
    return ModelObject.of(model)


@router.get("/{model_id:path}/files", response_model=ModelFileList)
async def list_model_files(
    model_id: str, request: Request, principal: Principal = Depends(require_principal)
) -> ModelFileList:
    files = await gateway_deps(request).catalog.list_model_files(principal.user_id, model_id)
    return ModelFileList(data=[ModelFileObject.of(f) for f in files])


@router.get(
    "/{model_id:path}/download",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/x-tar": {}, "application/octet-stream": {}},
            "description": "The model's folder as an uncompressed tar, or the one file `path` names",
        }
    },
)
async def download_model(
    model_id: str,
    request: Request,
    path: str | None = Query(None, description="One file of the model (relative); default: all, as a tar"),
    principal: Principal = Depends(require_principal),
) -> StreamingResponse:
    chunks = gateway_deps(request).catalog.download_model(principal.user_id, model_id, path or "")
    if path:
        headers = {"Content-Disposition": attachment(posixpath.basename(path))}
        return await stream_response(chunks, "application/octet-stream", headers)
    headers = {"Content-Disposition": attachment(f"{model_id.replace('/', '_')}.tar")}
    return await stream_response(chunks, "application/x-tar", headers)


@router.get("/{model_id:path}", response_model=ModelObject)
async def get_model(
    model_id: str, request: Request, principal: Principal = Depends(require_principal)
) -> ModelObject:
    return ModelObject.of(await gateway_deps(request).catalog.get_model(principal.user_id, model_id))


@router.delete("/{model_id:path}", response_model=ModelDeleted)
async def delete_model(
    model_id: str, request: Request, principal: Principal = Depends(require_principal)
) -> ModelDeleted:
    deleted = await gateway_deps(request).catalog.delete_model(principal.user_id, model_id)
    return ModelDeleted(id=deleted.id)
