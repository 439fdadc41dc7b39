"""/v1/files: adapters from OpenAI's Files API to the catalog. An upload is streamed to the
catalog in blocks as it is read back from Starlette's spool file, never held whole in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import StreamingResponse

from suanli_inference_gateway.authentication.dependency import require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.dependencies import gateway_deps
from suanli_inference_gateway.openai.files.protocol import FileDeleted, FileList, FileObject, FilePurpose
from suanli_inference_gateway.platform.usage.storage import require_storage_room
from suanli_inference_gateway.settings import GatewaySettings
from suanli_inference_gateway.streaming import attachment, stream_response

router = APIRouter(prefix="/files", tags=["files"])


async def _blocks(upload: UploadFile, size: int) -> AsyncIterator[bytes]:
    await upload.seek(0)
    while block := await upload.read(size):
        yield block


@router.post("", response_model=FileObject)
async def create_file(
    request: Request,
    file: UploadFile = File(description="The file: JSONL for fine-tune, a document for assistants"),
    purpose: FilePurpose = Form(),
    principal: Principal = Depends(require_principal),
) -> FileObject:
    settings: GatewaySettings = request.app.state.settings
    deps = gateway_deps(request)
    await require_storage_room(deps.auth, deps.catalog, principal.user_id, file.size or 0)
    stored = await deps.catalog.upload_file(
        principal.user_id,
        file.filename or "",
        purpose,
        _blocks(file, settings.upload_chunk_bytes),
        timeout=settings.upload_timeout_s,
    )
    return FileObject.of(stored)


@router.get("", response_model=FileList)
async def list_files(
    request: Request,
    purpose: str | None = Query(None, description="Only files of this purpose"),
    principal: Principal = Depends(require_principal),
) -> FileList:
    files = await gateway_deps(request).catalog.list_files(principal.user_id, purpose or "")
    return FileList(data=[FileObject.of(f) for f in files])


@router.get("/{file_id}", response_model=FileObject)
async def retrieve_file(
    file_id: str, request: Request, principal: Principal = Depends(require_principal)
) -> FileObject:
    return FileObject.of(await gateway_deps(request).catalog.get_file(principal.user_id, file_id))


@router.get(
    "/{file_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The file's bytes"}},
)
async def retrieve_file_content(
    file_id: str, request: Request, principal: Principal = Depends(require_principal)
) -> StreamingResponse:
    catalog = gateway_deps(request).catalog
    stored = await catalog.get_file(principal.user_id, file_id)
    headers = {"Content-Length": str(stored.bytes), "Content-Disposition": attachment(stored.filename)}
    return await stream_response(
        catalog.read_file_content(principal.user_id, file_id), "application/octet-stream", headers
    )


@router.delete("/{file_id}", response_model=FileDeleted)
async def delete_file(
    file_id: str, request: Request, principal: Principal = Depends(require_principal)
) -> FileDeleted:
    deleted = await gateway_deps(request).catalog.delete_file(principal.user_id, file_id)
    return FileDeleted(id=deleted.id)
