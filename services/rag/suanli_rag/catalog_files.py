"""The catalog's files, as the rag service reads them: a document is a file the user uploaded
with purpose `assistants`; its bytes stream from the catalog on behalf of the document's owner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc

from suanli_common.grpc import error_from_rpc
from suanli_common.proto.suanli.v1 import catalog_pb2, catalog_pb2_grpc

CATALOG_SERVICE = "suanli.v1.CatalogService"
IDEMPOTENT_METHODS = ("GetFile",)


@dataclass(frozen=True, slots=True)
class CatalogFile:
    id: str
    filename: str
    purpose: str
    bytes: int


class CatalogFiles(Protocol):
    async def get(self, owner_id: str, file_id: str) -> CatalogFile: ...
    async def read(self, owner_id: str, file_id: str, limit: int) -> bytes:
        """The whole file; more than `limit` bytes is an error."""
        ...


class DocumentTooLarge(Exception):
    pass


class GrpcCatalogFiles:
    def __init__(self, stub: catalog_pb2_grpc.CatalogServiceStub) -> None:
        self._stub = stub

    async def get(self, owner_id: str, file_id: str) -> CatalogFile:
        file = await self._stub.GetFile(catalog_pb2.GetFileRequest(caller_id=owner_id, file_id=file_id))
        return CatalogFile(id=file.id, filename=file.filename, purpose=file.purpose, bytes=file.bytes)

    async def read(self, owner_id: str, file_id: str, limit: int) -> bytes:
        call = self._stub.ReadFileContent(
            catalog_pb2.ReadFileContentRequest(caller_id=owner_id, file_id=file_id)
        )
        data = bytearray()
        try:
            async for chunk in call:
                data += chunk.data
                if len(data) > limit:
                    raise DocumentTooLarge(f"the file is larger than {limit} bytes")
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        finally:
            call.cancel()
        return bytes(data)
