"""The chunks of every knowledge base in Qdrant: one collection per knowledge base, each chunk a
point with a dense vector (meaning) and a BM25 sparse vector (words), retrieved by both and
fused with reciprocal rank fusion.

A chunk's point id derives from (file, attempt, chunk index), so running an attempt again
overwrites its points instead of adding copies: a redelivered ingestion never duplicates chunks.
A new attempt (a re-index) writes beside the old one and removes the old points when it is done.

Embedded Qdrant computes in the calling thread (brute force, seconds per query at 100k points),
so every call runs on a worker thread and the event loop keeps serving; embedded Qdrant gets one
thread (it is not made for concurrent callers), a Qdrant server several."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from suanli_rag.chunking import Chunk
from suanli_rag.sparse import SparseVector

DENSE = "dense"
SPARSE = "bm25"
_POINTS = uuid.UUID("6f1d0c3e-5b8a-4e51-9a0e-0d4c2f1b7a11")


def collection_name(knowledge_base_id: str) -> str:
    return f"kb_{knowledge_base_id}"


def point_id(file_id: str, attempt_id: str, chunk_index: int) -> str:
    return str(uuid.uuid5(_POINTS, f"{file_id}/{attempt_id}/{chunk_index}"))


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    file_id: str
    attempt_id: str
    filename: str
    chunk: Chunk
    dense: list[float]
    sparse: SparseVector
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Passage:
    file_id: str
    filename: str
    chunk_index: int
    text: str
    score: float
    heading_path: str
    page: int | None
    attributes: dict[str, Any]


def _document_filter(file_id: str, *, attempt_id: str = "", other_than: str = "") -> models.Filter:
    """A document's chunks: all of them, those of one attempt, or those of every other attempt."""
    same_file = models.FieldCondition(key="file_id", match=models.MatchValue(value=file_id))
    if attempt_id:
        attempt = models.FieldCondition(key="attempt_id", match=models.MatchValue(value=attempt_id))
        return models.Filter(must=[same_file, attempt])
    if other_than:
        attempt = models.FieldCondition(key="attempt_id", match=models.MatchValue(value=other_than))
        return models.Filter(must=[same_file], must_not=[attempt])
    return models.Filter(must=[same_file])


T = TypeVar("T")


class ChunkIndex:
    def __init__(self, client: QdrantClient, *, embedded: bool) -> None:
        self._client = client
        self._embedded = embedded
        self._threads = ThreadPoolExecutor(max_workers=1 if embedded else 8, thread_name_prefix="qdrant")
        self._creating: dict[str, asyncio.Lock] = {}

    async def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, functools.partial(method, *args, **kwargs)
        )

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        self._client.close()

    async def ensure_collection(self, knowledge_base_id: str, dimension: int) -> None:
        """Creates the collection unless it exists; documents of a new knowledge base may ask at
        the same time, hence the lock (and a server's 'already exists' from another process)."""
        name = collection_name(knowledge_base_id)
        async with self._creating.setdefault(name, asyncio.Lock()):
            if await self._call(self._client.collection_exists, name):
                return
            try:
                await self._call(
                    self._client.create_collection,
                    name,
                    vectors_config={
                        DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)
                    },
                    sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                )
            except (UnexpectedResponse, ValueError):
                if not await self._call(self._client.collection_exists, name):
                    raise
                return
            if not self._embedded:  # a server filters by document through these; embedded Qdrant scans
                for field in ("file_id", "attempt_id"):
                    await self._call(
                        self._client.create_payload_index, name, field, models.PayloadSchemaType.KEYWORD
                    )

    async def upsert(self, knowledge_base_id: str, chunks: list[IndexedChunk]) -> None:
        if not chunks:
            return
        points = [
            models.PointStruct(
                id=point_id(item.file_id, item.attempt_id, item.chunk.index),
                vector={
                    DENSE: item.dense,
                    SPARSE: models.SparseVector(indices=item.sparse.indices, values=item.sparse.values),
                },
                payload={
                    "file_id": item.file_id,
                    "attempt_id": item.attempt_id,
                    "filename": item.filename,
                    "chunk_index": item.chunk.index,
                    "text": item.chunk.text,
                    "heading_path": item.chunk.heading_path,
                    "page": item.chunk.page,
                    "start": item.chunk.start,
                    "attributes": item.attributes,
                },
            )
            for item in chunks
        ]
        await self._call(self._client.upsert, collection_name(knowledge_base_id), points, wait=True)

    async def delete_document(
        self, knowledge_base_id: str, file_id: str, *, attempt_id: str = "", other_than: str = ""
    ) -> None:
        """Deletes a document's chunks: all, one attempt's, or those every other attempt left."""
        name = collection_name(knowledge_base_id)
        if await self._call(self._client.collection_exists, name):
            await self._call(
                self._client.delete,
                name,
                models.FilterSelector(
                    filter=_document_filter(file_id, attempt_id=attempt_id, other_than=other_than)
                ),
                wait=True,
            )

    async def count(self, knowledge_base_id: str, file_id: str | None = None) -> int:
        name = collection_name(knowledge_base_id)
        if not await self._call(self._client.collection_exists, name):
            return 0
        result = await self._call(
            self._client.count, name, count_filter=_document_filter(file_id) if file_id else None, exact=True
        )
        return int(result.count)

    async def drop(self, knowledge_base_id: str) -> None:
        name = collection_name(knowledge_base_id)
        if await self._call(self._client.collection_exists, name):
            await self._call(self._client.delete_collection, name)

    async def search(
        self,
        knowledge_base_id: str,
        dense: list[float],
        sparse: SparseVector,
        *,
        limit: int,
        query_filter: models.Filter | None = None,
        min_relevance: float | None = None,
    ) -> list[Passage]:
        """Best `limit` chunks by fused rank. A chunk only counts as found by meaning when its
        cosine similarity reaches `min_relevance`, so a question about something the documents
        never mention finds nothing rather than the least unrelated chunks."""
        name = collection_name(knowledge_base_id)
        if not await self._call(self._client.collection_exists, name):
            return []
        depth = max(limit * 4, 20)
        prefetch = [
            models.Prefetch(
                query=dense, using=DENSE, limit=depth, filter=query_filter, score_threshold=min_relevance
            )
        ]
        if sparse:
            prefetch.append(
                models.Prefetch(
                    query=models.SparseVector(indices=sparse.indices, values=sparse.values),
                    using=SPARSE,
                    limit=depth,
                    filter=query_filter,
                )
            )
        response = await self._call(
            self._client.query_points,
            name,
            prefetch=prefetch,
            query=models.FusionQuery(fusion=models.Fusion.RRF),
            limit=limit,
            with_payload=True,
        )
        return [
            Passage(
                file_id=str(p["file_id"]),
                filename=str(p["filename"]),
                chunk_index=int(p["chunk_index"]),
                text=str(p["text"]),
                score=float(point.score),
                heading_path=str(p.get("heading_path") or ""),
                page=p.get("page"),
                attributes=dict(p.get("attributes") or {}),
            )
            for point in response.points
            if (p := point.payload or {})
        ]
