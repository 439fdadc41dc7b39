"""The catalog service as the gateway sees it: models and OpenAI files as domain dataclasses, byte
streams in and out; no protobuf past this module.

Unary calls raise the catalog's `SuanliError` through the channel's interceptor. Streams need
more care: the interceptors do not cover server streams, and an upload the catalog refuses
early (size limit, bad purpose) can surface as a raw `AioRpcError`; both are mapped here.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc

from suanli_common.grpc import error_from_rpc
from suanli_common.proto.suanli.v1 import catalog_pb2, catalog_pb2_grpc

CATALOG_SERVICE = "suanli.v1.CatalogService"
IDEMPOTENT_METHODS = (
    "GetModel",
    "ListModels",
    "ListModelFiles",
    "DownloadModel",
    "GetFile",
    "ListFiles",
    "ReadFileContent",
    "GetArtifactUrl",
)

KINDS = {
    catalog_pb2.MODEL_KIND_BASE: "base",
    catalog_pb2.MODEL_KIND_FINE_TUNED: "fine_tuned",
    catalog_pb2.MODEL_KIND_ADAPTER: "adapter",
    catalog_pb2.MODEL_KIND_EMBEDDING: "embedding",
    catalog_pb2.MODEL_KIND_ARTIFACT: "artifact",  # a job output that is not a model
}
KINDS_TO_PB = {name: kind for kind, name in KINDS.items()}
STATES = {
    catalog_pb2.MODEL_STATE_REGISTERING: "registering",
    catalog_pb2.MODEL_STATE_READY: "ready",
    catalog_pb2.MODEL_STATE_FAILED: "failed",
}
VISIBILITIES = {catalog_pb2.VISIBILITY_PRIVATE: "private", catalog_pb2.VISIBILITY_PUBLIC: "public"}
VISIBILITIES_TO_PB = {name: visibility for visibility, name in VISIBILITIES.items()}


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    owner_id: str
    kind: str  # "base" | "fine_tuned" | "adapter" | "embedding" | "artifact"
    state: str  # "registering" | "ready" | "failed"
    visibility: str  # "private" | "public"
    source: str
    architecture: str
    parameter_count: int
    context_length: int
    base_model_id: str
    size_bytes: int
    is_default: bool
    error: str
    created_at: datetime
    path: str = ""  # its folder on the catalog's storage, for trainers and servers


@dataclass(frozen=True, slots=True)
class ModelFile:
    path: str  # relative to the model's folder
    bytes: int


@dataclass(frozen=True, slots=True)
class DatasetValidation:
    format: str  # "openai_messages" | "alpaca" | "sharegpt"
    examples: int
    tokens: int
    tokenizer: str  # the model whose tokenizer counted, or "bytes/4" for the estimate


@dataclass(frozen=True, slots=True)
class StoredFile:
    id: str
    owner_id: str
    filename: str
    purpose: str  # "fine-tune" | "assistants"
    bytes: int
    status: str  # "processed" | "error"
    status_details: str
    created_at: datetime
    validation: DatasetValidation | None  # fine-tune files only


class CatalogApi(Protocol):
    async def register_model(
        self,
        owner_id: str,
        source: str,
        *,
        model_id: str = "",
        kind: str = "base",
        visibility: str = "private",
        base_model_id: str = "",
    ) -> Model: ...
    async def get_model(self, caller_id: str, model_id: str) -> Model: ...
    async def list_models(self, caller_id: str) -> list[Model]: ...
    async def delete_model(self, caller_id: str, model_id: str) -> Model: ...
    async def list_model_files(self, caller_id: str, model_id: str) -> list[ModelFile]: ...
    def download_model(self, caller_id: str, model_id: str, path: str = "") -> AsyncIterator[bytes]: ...
    async def upload_file(
        self,
        caller_id: str,
        filename: str,
        purpose: str,
        data: AsyncIterable[bytes],
        *,
        model_id: str = "",
        timeout: float | None = None,
    ) -> StoredFile: ...
    async def get_file(self, caller_id: str, file_id: str) -> StoredFile: ...
    async def list_files(self, caller_id: str, purpose: str = "") -> list[StoredFile]: ...
    async def delete_file(self, caller_id: str, file_id: str) -> StoredFile: ...
    def read_file_content(self, caller_id: str, file_id: str) -> AsyncIterator[bytes]: ...
    async def file_url(self, caller_id: str, file_id: str) -> str:
        """Where a job may read the file's bytes: a file:// URL or a presigned one."""
        ...


def _time(message: Any) -> datetime:
    return message.created_at.ToDatetime(UTC) if message.HasField("created_at") else datetime.now(UTC)


def _model(msg: catalog_pb2.Model) -> Model:
    return Model(
        id=msg.id,
        owner_id=msg.owner_id,
        kind=KINDS.get(msg.kind, "base"),
        state=STATES.get(msg.state, "registering"),
        visibility=VISIBILITIES.get(msg.visibility, "private"),
        source=msg.source,
        architecture=msg.architecture,
        parameter_count=int(msg.parameter_count),
        context_length=int(msg.context_length),
        base_model_id=msg.base_model_id,
        size_bytes=int(msg.size_bytes),
        is_default=msg.is_default,
        error=msg.error,
        created_at=_time(msg),
        path=msg.path,
    )


def _file(msg: catalog_pb2.File) -> StoredFile:
    validation = None
    if msg.HasField("validation"):
        v = msg.validation
        validation = DatasetValidation(
            format=v.format, examples=int(v.examples), tokens=int(v.tokens), tokenizer=v.tokenizer
        )
    return StoredFile(
        id=msg.id,
        owner_id=msg.owner_id,
        filename=msg.filename,
        purpose=msg.purpose,
        bytes=int(msg.bytes),
        status=msg.status,
        status_details=msg.status_details,
        created_at=_time(msg),
        validation=validation,
    )


async def _data(call: Any) -> AsyncIterator[bytes]:
    """The bytes of a server stream of `DataChunk`s. Closing the iterator early (the HTTP client
    went away) cancels the call, so the catalog stops reading."""
    try:
        async for chunk in call:
            yield chunk.data
    except grpc.aio.AioRpcError as exc:
        raise error_from_rpc(exc) from None
    finally:
        call.cancel()


class CatalogClient:
    """`CatalogApi` over gRPC (a channel from `suanli_common.grpc.make_channel`)."""

    def __init__(self, stub: catalog_pb2_grpc.CatalogServiceStub) -> None:
        self._stub = stub

    async def register_model(
        self,
        owner_id: str,
        source: str,
        *,
        model_id: str = "",
        kind: str = "base",
        visibility: str = "private",
        base_model_id: str = "",
    ) -> Model:
        request = catalog_pb2.RegisterModelRequest(
            owner_id=owner_id,
            id=model_id,
            source=source,
            kind=KINDS_TO_PB[kind],
            visibility=VISIBILITIES_TO_PB[visibility],
            base_model_id=base_model_id,
        )
        return _model(await self._stub.RegisterModel(request))

    async def get_model(self, caller_id: str, model_id: str) -> Model:
        request = catalog_pb2.GetModelRequest(caller_id=caller_id, model_id=model_id)
        return _model(await self._stub.GetModel(request))

    async def list_models(self, caller_id: str) -> list[Model]:
        response = await self._stub.ListModels(catalog_pb2.ListModelsRequest(caller_id=caller_id))
        return [_model(m) for m in response.models]

    async def delete_model(self, caller_id: str, model_id: str) -> Model:
        request = catalog_pb2.DeleteModelRequest(caller_id=caller_id, model_id=model_id)
        return _model(await self._stub.DeleteModel(request))

    async def list_model_files(self, caller_id: str, model_id: str) -> list[ModelFile]:
        request = catalog_pb2.ListModelFilesRequest(caller_id=caller_id, model_id=model_id)
        response = await self._stub.ListModelFiles(request)
        return [ModelFile(path=f.path, bytes=int(f.bytes)) for f in response.files]

    def download_model(self, caller_id: str, model_id: str, path: str = "") -> AsyncIterator[bytes]:
        # No deadline: a large model takes as long as the client takes to read it.
        request = catalog_pb2.DownloadModelRequest(caller_id=caller_id, model_id=model_id, path=path)
        return _data(self._stub.DownloadModel(request))

    async def upload_file(
        self,
        caller_id: str,
        filename: str,
        purpose: str,
        data: AsyncIterable[bytes],
        *,
        model_id: str = "",
        timeout: float | None = None,
    ) -> StoredFile:
        async def chunks() -> AsyncIterator[catalog_pb2.UploadFileChunk]:
            yield catalog_pb2.UploadFileChunk(
                metadata=catalog_pb2.UploadFileMetadata(
                    caller_id=caller_id, filename=filename, purpose=purpose, model_id=model_id
                )
            )
            async for block in data:
                yield catalog_pb2.UploadFileChunk(data=block)

        try:
            response = await self._stub.UploadFile(chunks(), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            # An error the catalog sends before we finished streaming bypasses the interceptor.
            raise error_from_rpc(exc) from None
        return _file(response)

    async def get_file(self, caller_id: str, file_id: str) -> StoredFile:
        request = catalog_pb2.GetFileRequest(caller_id=caller_id, file_id=file_id)
        return _file(await self._stub.GetFile(request))

    async def list_files(self, caller_id: str, purpose: str = "") -> list[StoredFile]:
        request = catalog_pb2.ListFilesRequest(caller_id=caller_id, purpose=purpose)
        response = await self._stub.ListFiles(request)
        return [_file(f) for f in response.files]

    async def delete_file(self, caller_id: str, file_id: str) -> StoredFile:
        request = catalog_pb2.DeleteFileRequest(caller_id=caller_id, file_id=file_id)
        return _file(await self._stub.DeleteFile(request))

    def read_file_content(self, caller_id: str, file_id: str) -> AsyncIterator[bytes]:
        request = catalog_pb2.ReadFileContentRequest(caller_id=caller_id, file_id=file_id)
        return _data(self._stub.ReadFileContent(request))

    async def file_url(self, caller_id: str, file_id: str) -> str:
        request = catalog_pb2.GetArtifactUrlRequest(caller_id=caller_id, artifact_id=file_id)
        return (await self._stub.GetArtifactUrl(request)).url
