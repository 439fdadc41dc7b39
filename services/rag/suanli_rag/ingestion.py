"""Ingestion of one document: read it from the catalog, parse, chunk, embed, upsert into Qdrant,
and record the outcome with a `document.indexed` or `document.failed` event.

Safe to run twice for the same work (JetStream redelivers what a dead worker never acknowledged):
chunk point ids derive from (file, chunk index), so a second run overwrites the first run's points
and never adds copies. A document that can never be indexed (unsupported, encrypted, corrupt,
empty, too large) fails for good and leaves no chunk behind; anything else (catalog unreachable,
embedding deployment down) raises, and the work is retried."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from suanli_common.db import Database
from suanli_common.errors import NotFound
from suanli_common.logging import get_logger
from suanli_common.outbox import Outbox
from suanli_common.proto.suanli.v1.events_pb2 import DocumentChanged
from suanli_rag.catalog_files import CatalogFiles, DocumentTooLarge
from suanli_rag.chunking import Chunk, ChunkingConfig, chunk_document, embedding_text
from suanli_rag.domain import DocumentStatus
from suanli_rag.embeddings import Embedder, Embedders
from suanli_rag.index import ChunkIndex, IndexedChunk
from suanli_rag.models import DocumentRow, KnowledgeBaseRow
from suanli_rag.parsing import DocumentError, parse_document
from suanli_rag.repository import RagRepository, document_of
from suanli_rag.sparse import Bm25

DOCUMENT_INDEXED = "document.indexed"
DOCUMENT_FAILED = "document.failed"

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Work:
    """One document to index, as its rows said when the work began."""

    knowledge_base_id: str
    file_id: str
    owner_id: str
    filename: str
    generation: int
    attributes: dict[str, Any]
    embedding_model: str
    chunking: ChunkingConfig


class Ingestion:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        catalog: CatalogFiles,
        index: ChunkIndex,
        embedders: Embedders,
        *,
        count_tokens: Callable[[str], int],
        max_document_bytes: int,
        batch_size: int = 32,
        bm25: Bm25 | None = None,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._catalog = catalog
        self._index = index
        self._embedders = embedders
        self._count_tokens = count_tokens
        self._max_bytes = max_document_bytes
        self._batch = batch_size
        self._bm25 = bm25 or Bm25()

    async def ingest(self, event: DocumentChanged) -> None:
        work = await self._work(event)
        if work is None:
            return  # deleted, re-indexed since, or already done: nothing to do
        try:
            data = await self._catalog.read(work.owner_id, work.file_id, self._max_bytes)
            parsed = await asyncio.to_thread(parse_document, work.filename, data)
            chunks = await asyncio.to_thread(chunk_document, parsed, work.chunking, self._count_tokens)
            if not chunks:
                raise DocumentError("empty_document", "the document has no text to index")
        except DocumentError as exc:
            await self.fail(work, exc.code, exc.message)
            return
        except DocumentTooLarge as exc:
            await self.fail(work, "file_too_large", str(exc))
            return
        except NotFound:
            await self.fail(work, "file_not_found", f"file {work.file_id} is gone from the catalog")
            return
        log.info(
            "indexing document", knowledge_base=work.knowledge_base_id, file=work.file_id, chunks=len(chunks)
        )
        if not await self._progress(work, 0, len(chunks)):
            return
        embedder = self._embedders.for_model(work.owner_id, work.embedding_model)
        for start in range(0, len(chunks), self._batch):
            batch = chunks[start : start + self._batch]
            await self._index_batch(work, embedder, batch, first=start == 0)
            if not await self._progress(work, start + len(batch), len(chunks)):
                return
        # A re-index with larger chunks leaves fewer of them: drop the old tail.
        await self._index.delete_document(work.knowledge_base_id, work.file_id, from_index=len(chunks))
        await self._finish(work, DocumentStatus.completed, chunks=len(chunks))

    async def fail(self, work: Work | DocumentChanged, code: str, message: str) -> None:
        """Marks the document failed for good, after removing whatever chunks it had."""
        if isinstance(work, DocumentChanged):
            found = await self._work(work)
            if found is None:
                return
            work = found
        log.warning("document failed", knowledge_base=work.knowledge_base_id, file=work.file_id, code=code)
        await self._index.delete_document(work.knowledge_base_id, work.file_id)
        await self._finish(work, DocumentStatus.failed, code=code, message=message)

    async def _index_batch(self, work: Work, embedder: Embedder, batch: list[Chunk], *, first: bool) -> None:
        texts = [embedding_text(chunk) for chunk in batch]
        dense = await embedder.embed(texts)
        if first:
            await self._index.ensure_collection(work.knowledge_base_id, len(dense[0]))
        sparse = [self._bm25.document(text) for text in texts]
        await self._index.upsert(
            work.knowledge_base_id,
            [
                IndexedChunk(work.file_id, work.filename, chunk, vector, words, work.attributes)
                for chunk, vector, words in zip(batch, dense, sparse, strict=True)
            ],
        )

    async def _work(self, event: DocumentChanged) -> Work | None:
        async with self._db.session() as session:
            repo = RagRepository(session)
            document = await repo.document_row(event.knowledge_base_id, event.file_id)
            kb = await repo.knowledge_base_row(event.knowledge_base_id)
            if (
                document is None
                or kb is None
                or document.generation != event.generation
                or document.status != DocumentStatus.in_progress
            ):
                return None
            return self._work_of(document, kb)

    @staticmethod
    def _work_of(document: DocumentRow, kb: KnowledgeBaseRow) -> Work:
        return Work(
            knowledge_base_id=kb.id,
            file_id=document.file_id,
            owner_id=document.owner_id,
            filename=document.filename,
            generation=document.generation,
            attributes=document_of(document).attributes,
            embedding_model=kb.embedding_model,
            chunking=ChunkingConfig(kb.chunk_max_tokens, kb.chunk_overlap_tokens),
        )

    async def _current(self, repo: RagRepository, work: Work) -> DocumentRow | None:
        row = await repo.document_row(work.knowledge_base_id, work.file_id)
        return row if row is not None and row.generation == work.generation else None

    async def _progress(self, work: Work, done: int, total: int) -> bool:
        """Records how far the document got; False when it was deleted or re-indexed meanwhile."""
        async with self._db.session() as session:
            row = await self._current(RagRepository(session), work)
            if row is not None:
                row.chunks, row.chunks_total = done, total
                row.updated_at = datetime.now(UTC)
        if row is None:
            await self._forget(work)
        return row is not None

    async def _finish(
        self, work: Work, status: DocumentStatus, *, chunks: int = 0, code: str = "", message: str = ""
    ) -> None:
        async with self._db.session() as session:
            row = await self._current(RagRepository(session), work)
            if row is not None:
                row.status, row.error_code, row.error_message = status, code, message
                row.chunks = row.chunks_total = chunks
                row.updated_at = datetime.now(UTC)
                self._outbox.add(
                    session,
                    DOCUMENT_INDEXED if status == DocumentStatus.completed else DOCUMENT_FAILED,
                    work.knowledge_base_id,
                    DocumentChanged(
                        knowledge_base_id=work.knowledge_base_id,
                        file_id=work.file_id,
                        owner_id=work.owner_id,
                        generation=work.generation,
                        chunks=chunks,
                        error_code=code,
                        error_message=message,
                    ),
                )
        if row is None:
            await self._forget(work)

    async def _forget(self, work: Work) -> None:
        """The document was removed while it was being indexed: its chunks go too. (After a
        re-index the new generation's run owns the points, so those stay.)"""
        async with self._db.session() as session:
            gone = await RagRepository(session).document_row(work.knowledge_base_id, work.file_id) is None
        if gone:
            await self._index.delete_document(work.knowledge_base_id, work.file_id)
