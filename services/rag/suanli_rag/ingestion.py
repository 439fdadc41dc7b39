"""Ingestion of one document: read it from the catalog, parse, chunk, embed, upsert into Qdrant,
and record the outcome with a `document.indexed` or `document.failed` event.

Each indexing of a document is an attempt with its own id (attaching, re-attaching after a delete
or a failure, a re-index); work whose attempt is no longer the document's is stale and stops.
Running one attempt twice (JetStream redelivers what a dead worker never acknowledged) is safe:
its chunk point ids derive from (file, attempt, chunk index), so the second run overwrites the
first one's points. A document that can never be indexed (unsupported, encrypted, corrupt, empty,
too large, refused by its embedding model) fails for good and leaves no chunk behind; anything
else (catalog or embedding deployment unreachable) raises, and the work is retried."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from suanli_common.db import Database
from suanli_common.errors import NotFound, SuanliError, Unavailable
from suanli_common.logging import get_logger
from suanli_common.outbox import Outbox
from suanli_common.proto.suanli.v1.events_pb2 import DocumentChanged
from suanli_rag.catalog_files import CatalogFiles, DocumentTooLarge
from suanli_rag.chunking import Chunk, ChunkingConfig, chunk_document, embedding_text
from suanli_rag.domain import DocumentStatus
from suanli_rag.embeddings import Embedder, Embedders
from suanli_rag.events import DOCUMENT_FAILED, DOCUMENT_INDEXED
from suanli_rag.index import ChunkIndex, IndexedChunk
from suanli_rag.metrics import RagMetrics
from suanli_rag.models import DocumentRow
from suanli_rag.parsing import DocumentError, parse_document
from suanli_rag.repository import RagRepository, document_of
from suanli_rag.sparse import Bm25

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Work:
    """One attempt at indexing a document, as its rows said when the work began."""

    knowledge_base_id: str
    file_id: str
    owner_id: str
    filename: str
    attempt_id: str
    replaces_points: bool
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
        metrics: RagMetrics | None = None,
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
        self._metrics = metrics

    async def ingest(self, event: DocumentChanged) -> None:
        work = await self._work(event)
        if work is None:
            return  # deleted, attempted again since, or already done: nothing to do
        try:
            await self._index_document(work)
        except DocumentError as exc:
            await self._fail(work, exc.code, exc.message)
        except DocumentTooLarge as exc:
            await self._fail(work, "file_too_large", str(exc))
        except NotFound as exc:
            await self._fail(work, "file_not_found", f"file {work.file_id} is gone from the catalog ({exc})")
        except Unavailable:
            raise  # a peer is down: retried later
        except SuanliError as exc:  # the embedding deployment refused the text: retrying will not help
            await self._fail(work, exc.code or "embedding_failed", exc.message)

    async def fail(self, event: DocumentChanged, code: str, message: str) -> None:
        """Gives up on an attempt (its retries are spent): the document fails, with no chunk left."""
        if work := await self._work(event):
            await self._fail(work, code, message)

    async def _index_document(self, work: Work) -> None:
        data = await self._catalog.read(work.owner_id, work.file_id, self._max_bytes)
        parsed = await asyncio.to_thread(parse_document, work.filename, data)
        chunks = await asyncio.to_thread(chunk_document, parsed, work.chunking, self._count_tokens)
        if not chunks:
            raise DocumentError("empty_document", "the document has no text to index")
        log.info(
            "indexing document", knowledge_base=work.knowledge_base_id, file=work.file_id, chunks=len(chunks)
        )
        embedder = self._embedders.for_model(work.owner_id, work.embedding_model)
        if not await self._progress(work, 0, len(chunks)):
            return
        # Batches of chunks of similar length pad least when embedded; the order of upserts is free
        # (a chunk's point id holds its position).
        by_length = sorted(chunks, key=lambda chunk: len(chunk.text))
        for start in range(0, len(by_length), self._batch):
            batch = by_length[start : start + self._batch]
            await self._index_batch(work, embedder, batch, first=start == 0)
            if not await self._progress(work, start + len(batch), len(chunks)):
                return
        if work.replaces_points:  # the points of an earlier attempt (before a re-index) give way
            await self._index.delete_document(
                work.knowledge_base_id, work.file_id, other_than=work.attempt_id
            )
        await self._finish(work, DocumentStatus.completed, chunks=len(chunks))

    async def _index_batch(self, work: Work, embedder: Embedder, batch: list[Chunk], *, first: bool) -> None:
        texts = [embedding_text(chunk) for chunk in batch]
        dense = await embedder.embed(texts)
        if first:
            await self._index.ensure_collection(work.knowledge_base_id, len(dense[0]))
        sparse = [self._bm25.document(text) for text in texts]
        await self._index.upsert(
            work.knowledge_base_id,
            [
                IndexedChunk(
                    work.file_id, work.attempt_id, work.filename, chunk, vector, words, work.attributes
                )
                for chunk, vector, words in zip(batch, dense, sparse, strict=True)
            ],
        )

    async def _fail(self, work: Work, code: str, message: str) -> None:
        log.warning("document failed", knowledge_base=work.knowledge_base_id, file=work.file_id, code=code)
        if await self._finish(work, DocumentStatus.failed, code=code, message=message):
            # Its attempt was current, so every chunk of the document is a stale one now.
            await self._index.delete_document(work.knowledge_base_id, work.file_id)

    async def _work(self, event: DocumentChanged) -> Work | None:
        async with self._db.session() as session:
            repo = RagRepository(session)
            document = await repo.document_row(event.knowledge_base_id, event.file_id)
            kb = await repo.knowledge_base_row(event.knowledge_base_id)
            if (
                document is None
                or kb is None
                or document.attempt_id != event.attempt_id
                or document.status != DocumentStatus.in_progress
            ):
                return None
            return Work(
                knowledge_base_id=kb.id,
                file_id=document.file_id,
                owner_id=document.owner_id,
                filename=document.filename,
                attempt_id=document.attempt_id,
                replaces_points=document.replaces_points,
                attributes=document_of(document).attributes,
                embedding_model=kb.embedding_model,
                chunking=ChunkingConfig(kb.chunk_max_tokens, kb.chunk_overlap_tokens),
            )

    async def _current(self, repo: RagRepository, work: Work) -> DocumentRow | None:
        row = await repo.document_row(work.knowledge_base_id, work.file_id)
        current = (
            row is not None and row.attempt_id == work.attempt_id and row.status == DocumentStatus.in_progress
        )
        return row if current else None

    async def _progress(self, work: Work, done: int, total: int) -> bool:
        """Records how far the attempt got; False when it is stale (the document was deleted,
        or is being indexed by a newer attempt)."""
        async with self._db.session() as session:
            row = await self._current(RagRepository(session), work)
            if row is not None:
                row.chunks, row.chunks_total = done, total
                row.updated_at = datetime.now(UTC)
        if row is None:
            await self._abandon(work)
        return row is not None

    async def _finish(
        self, work: Work, status: DocumentStatus, *, chunks: int = 0, code: str = "", message: str = ""
    ) -> bool:
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
                        attempt_id=work.attempt_id,
                        chunks=chunks,
                        error_code=code,
                        error_message=message,
                    ),
                )
        if row is None:
            await self._abandon(work)
        elif self._metrics is not None:
            self._metrics.document_ingested(status)
        return row is not None

    async def _abandon(self, work: Work) -> None:
        """A stale attempt removes what it wrote; if its knowledge base is gone meanwhile, so is
        the collection its first batch may have made again."""
        async with self._db.session() as session:
            kb_gone = await RagRepository(session).knowledge_base_row(work.knowledge_base_id) is None
        if kb_gone:
            await self._index.drop(work.knowledge_base_id)
        else:
            await self._index.delete_document(
                work.knowledge_base_id, work.file_id, attempt_id=work.attempt_id
            )
