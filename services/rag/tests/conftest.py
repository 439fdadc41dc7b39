"""Fixtures that start the real rag service: SQLite and embedded Qdrant under tmp_path, a real
nats-server (ingestion runs off JetStream), the gRPC server on a free port and a client channel.
The catalog's files come from memory here; tests/integration runs the same path on the real
catalog."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from suanli_common.errors import NotFound, Unavailable
from suanli_common.grpc import make_channel
from suanli_common.proto.suanli.v1 import rag_pb2 as pb
from suanli_common.proto.suanli.v1 import rag_pb2_grpc
from suanli_common.testing import NatsServer, free_port
from suanli_rag.catalog_files import CatalogFile, DocumentTooLarge
from suanli_rag.main import RunningRag, running_rag
from suanli_rag.settings import RagSettings

# importlib mode: make `documents` importable (appended: other packages' tests import their own `conftest`)
sys.path.append(str(Path(__file__).parent))

ALICE, BOB = "user_alice", "user_bob"


@dataclass
class MemoryCatalog:
    """The catalog's files as the rag service reads them, kept in memory."""

    files: dict[str, tuple[str, CatalogFile, bytes]] = field(default_factory=dict)
    unavailable_reads: int = 0  # reads that find the catalog down first
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def put(self, owner_id: str, filename: str, data: bytes, purpose: str = "assistants") -> str:
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = (owner_id, CatalogFile(file_id, filename, purpose, len(data)), data)
        return file_id

    def _owned(self, owner_id: str, file_id: str) -> tuple[CatalogFile, bytes]:
        owner, file, data = self.files.get(file_id, ("", None, b""))
        if file is None or owner != owner_id:
            raise NotFound(f"no file {file_id}", param="file_id")
        return file, data

    async def get(self, owner_id: str, file_id: str) -> CatalogFile:
        return self._owned(owner_id, file_id)[0]

    async def read(self, owner_id: str, file_id: str, limit: int) -> bytes:
        if self.unavailable_reads:
            self.unavailable_reads -= 1
            raise Unavailable("a platform service is unavailable; try again shortly")
        data = self._owned(owner_id, file_id)[1]
        if len(data) > limit:
            raise DocumentTooLarge(f"the file is larger than {limit} bytes")
        return data


@dataclass
class Rag:
    running: RunningRag
    stub: rag_pb2_grpc.RagServiceStub
    catalog: MemoryCatalog

    async def create(self, owner: str = ALICE, **fields: object) -> pb.KnowledgeBase:
        return await self.stub.CreateKnowledgeBase(
            pb.CreateKnowledgeBaseRequest(caller_id=owner, name="docs", model="smollm2", **fields)  # type: ignore[arg-type]
        )

    async def attach(
        self,
        kb_id: str,
        filename: str,
        data: bytes,
        owner: str = ALICE,
        attributes: dict[str, object] | None = None,
    ) -> pb.Document:
        file_id = self.catalog.put(owner, filename, data)
        return await self.stub.AddDocument(
            pb.AddDocumentRequest(
                caller_id=owner,
                knowledge_base_id=kb_id,
                file_id=file_id,
                attributes_json=json.dumps(attributes or {}),
            )
        )

    async def settled(self, kb_id: str, file_id: str, owner: str = ALICE, timeout: float = 60) -> pb.Document:
        """The document once ingestion is done with it (completed or failed)."""
        async with asyncio.timeout(timeout):
            while True:
                document = await self.stub.GetDocument(
                    pb.GetDocumentRequest(caller_id=owner, knowledge_base_id=kb_id, file_id=file_id)
                )
                if document.status != "in_progress":
                    return document
                await asyncio.sleep(0.1)

    async def search(self, kb_id: str, query: str, owner: str = ALICE, **fields: object) -> list[pb.Passage]:
        response = await self.stub.Search(
            pb.SearchRequest(caller_id=owner, knowledge_base_id=kb_id, query=query, **fields)  # type: ignore[arg-type]
        )
        return list(response.passages)


@pytest.fixture
async def rag(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[Rag]:
    settings = RagSettings(
        home=tmp_path / "home", nats_url=nats_server.url, rag_grpc_port=free_port(), ingest_ack_wait_s=5
    )
    catalog = MemoryCatalog()
    async with running_rag(settings, catalog=catalog) as running:
        channel = make_channel(running.address, timeout=30)
        yield Rag(running, rag_pb2_grpc.RagServiceStub(channel), catalog)
        await channel.close()
