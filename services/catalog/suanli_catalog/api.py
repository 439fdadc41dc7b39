"""The CatalogService gRPC servicer: protobuf in, one service call, protobuf out. Domain errors
propagate as `SuanliError` and are mapped to statuses by `DomainErrorInterceptor`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypeAlias

import grpc

from suanli_catalog.domain import Model, ModelKind, ModelState, StoredFile, Visibility
from suanli_catalog.files_service import FilesService
from suanli_catalog.models_service import ModelsService
from suanli_common.errors import InvalidRequest
from suanli_common.proto.suanli.v1 import catalog_pb2, catalog_pb2_grpc

Context: TypeAlias = grpc.aio.ServicerContext

KINDS = {
    ModelKind.base: catalog_pb2.MODEL_KIND_BASE,
    ModelKind.fine_tuned: catalog_pb2.MODEL_KIND_FINE_TUNED,
    ModelKind.adapter: catalog_pb2.MODEL_KIND_ADAPTER,
    ModelKind.embedding: catalog_pb2.MODEL_KIND_EMBEDDING,
    ModelKind.artifact: catalog_pb2.MODEL_KIND_ARTIFACT,
}
KINDS_FROM_PB = {v: k for k, v in KINDS.items()}
STATES = {
    ModelState.registering: catalog_pb2.MODEL_STATE_REGISTERING,
    ModelState.ready: catalog_pb2.MODEL_STATE_READY,
    ModelState.failed: catalog_pb2.MODEL_STATE_FAILED,
}
VISIBILITIES = {
    Visibility.private: catalog_pb2.VISIBILITY_PRIVATE,
    Visibility.public: catalog_pb2.VISIBILITY_PUBLIC,
}
VISIBILITIES_FROM_PB = {v: k for k, v in VISIBILITIES.items()}


def _timestamp(message: Any, field: str, value: datetime | None) -> None:
    if value is not None:
        getattr(message, field).FromDatetime(value)


def model_pb(model: Model) -> catalog_pb2.Model:
    message = catalog_pb2.Model(
        id=model.id,
        owner_id=model.owner_id,
        kind=KINDS[model.kind],
        state=STATES[model.state],
        visibility=VISIBILITIES[model.visibility],
        source=model.source,
        architecture=model.architecture,
        parameter_count=model.parameter_count,
        context_length=model.context_length,
        chat_template=model.chat_template,
        base_model_id=model.base_model_id,
        error=model.error,
        path=model.path,
        size_bytes=model.size_bytes,
        is_default=model.is_default,
        tokenizer_path=model.path if model.kind not in (ModelKind.adapter, ModelKind.artifact) else "",
    )
    _timestamp(message, "created_at", model.created_at)
    return message


def file_pb(file: StoredFile) -> catalog_pb2.File:
    message = catalog_pb2.File(
        id=file.id,
        owner_id=file.owner_id,
        filename=file.filename,
        purpose=file.purpose.value,
        bytes=file.bytes,
        status=file.status,
        status_details=file.status_details,
    )
    if file.dataset is not None:
        message.validation.CopyFrom(
            catalog_pb2.DatasetValidation(
                format=file.dataset.format,
                examples=file.dataset.examples,
                tokens=file.dataset.tokens,
                tokenizer=file.dataset.tokenizer,
            )
        )
    _timestamp(message, "created_at", file.created_at)
    return message


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, models: ModelsService, files: FilesService) -> None:
        self._models = models
        self._files = files

    async def RegisterModel(
        self, request: catalog_pb2.RegisterModelRequest, context: Context
    ) -> catalog_pb2.Model:
        model = await self._models.register(
            owner_id=request.owner_id,
            source=request.source,
            model_id=request.id,
            kind=KINDS_FROM_PB.get(request.kind, ModelKind.base),
            visibility=VISIBILITIES_FROM_PB.get(request.visibility, Visibility.private),
            base_model_id=request.base_model_id,
            path=request.path,
        )
        return model_pb(model)

    async def GetModel(self, request: catalog_pb2.GetModelRequest, context: Context) -> catalog_pb2.Model:
        return model_pb(await self._models.get(request.caller_id, request.model_id))

    async def ListModels(
        self, request: catalog_pb2.ListModelsRequest, context: Context
    ) -> catalog_pb2.ListModelsResponse:
        models = await self._models.list_visible(request.caller_id)
        return catalog_pb2.ListModelsResponse(models=[model_pb(m) for m in models])

    async def DeleteModel(
        self, request: catalog_pb2.DeleteModelRequest, context: Context
    ) -> catalog_pb2.Model:
        return model_pb(await self._models.delete(request.caller_id, request.model_id))

    async def ListModelFiles(
        self, request: catalog_pb2.ListModelFilesRequest, context: Context
    ) -> catalog_pb2.ListModelFilesResponse:
        files = await self._models.files(request.caller_id, request.model_id)
        return catalog_pb2.ListModelFilesResponse(
            files=[catalog_pb2.ModelFile(path=path, bytes=size) for path, size in files]
        )

    async def DownloadModel(
        self, request: catalog_pb2.DownloadModelRequest, context: Context
    ) -> AsyncIterator[catalog_pb2.DataChunk]:
        async for data in self._models.download(request.caller_id, request.model_id, request.path):
            yield catalog_pb2.DataChunk(data=data)

    async def UploadFile(
        self, request_iterator: AsyncIterator[catalog_pb2.UploadFileChunk], context: Context
    ) -> catalog_pb2.File:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "metadata":
            raise InvalidRequest("the first message of an upload must carry its metadata", param="metadata")
        meta = first.metadata

        async def data() -> AsyncIterator[bytes]:
            async for chunk in request_iterator:
                if chunk.WhichOneof("part") != "data":
                    raise InvalidRequest("metadata may only come first", param="metadata")
                yield chunk.data

        stored = await self._files.upload(
            owner_id=meta.caller_id,
            filename=meta.filename,
            purpose=meta.purpose,
            model_id=meta.model_id,
            chunks=data(),
        )
        return file_pb(stored)

    async def GetFile(self, request: catalog_pb2.GetFileRequest, context: Context) -> catalog_pb2.File:
        return file_pb(await self._files.get(request.caller_id, request.file_id))

    async def ListFiles(
        self, request: catalog_pb2.ListFilesRequest, context: Context
    ) -> catalog_pb2.ListFilesResponse:
        files = await self._files.list_owned(request.caller_id, request.purpose)
        return catalog_pb2.ListFilesResponse(files=[file_pb(f) for f in files])

    async def DeleteFile(self, request: catalog_pb2.DeleteFileRequest, context: Context) -> catalog_pb2.File:
        return file_pb(await self._files.delete(request.caller_id, request.file_id))

    async def ReadFileContent(
        self, request: catalog_pb2.ReadFileContentRequest, context: Context
    ) -> AsyncIterator[catalog_pb2.DataChunk]:
        async for data in self._files.content(request.caller_id, request.file_id):
            yield catalog_pb2.DataChunk(data=data)

    async def GetArtifactUrl(
        self, request: catalog_pb2.GetArtifactUrlRequest, context: Context
    ) -> catalog_pb2.ArtifactUrl:
        # Artifacts with a URL are uploaded files for now (a job's inputs); models download
        # through DownloadModel.
        artifact = await self._files.url(request.caller_id, request.artifact_id)
        message = catalog_pb2.ArtifactUrl(url=artifact.url)
        _timestamp(message, "expires_at", artifact.expires_at)
        return message
