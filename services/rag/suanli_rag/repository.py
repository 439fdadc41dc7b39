"""Queries against the rag service's tables, inside the caller's unit of work (an `AsyncSession`)."""

from __future__ import annotations

import json

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from suanli_common.errors import NotFound
from suanli_rag.domain import Document, DocumentStatus, FileCounts, KnowledgeBase
from suanli_rag.models import DocumentRow, KnowledgeBaseRow


def knowledge_base_of(row: KnowledgeBaseRow, counts: FileCounts, usage_bytes: int) -> KnowledgeBase:
    return KnowledgeBase(
        id=row.id,
        owner_id=row.owner_id,
        name=row.name,
        description=row.description,
        model=row.model,
        embedding_model=row.embedding_model,
        chunk_max_tokens=row.chunk_max_tokens,
        chunk_overlap_tokens=row.chunk_overlap_tokens,
        metadata=json.loads(row.metadata_json or "{}"),
        created_at=row.created_at,
        last_active_at=row.last_active_at,
        file_counts=counts,
        usage_bytes=usage_bytes,
    )


def document_of(row: DocumentRow) -> Document:
    return Document(
        knowledge_base_id=row.knowledge_base_id,
        file_id=row.file_id,
        owner_id=row.owner_id,
        filename=row.filename,
        bytes=row.bytes,
        status=DocumentStatus(row.status),
        attempt_id=row.attempt_id,
        error_code=row.error_code,
        error_message=row.error_message,
        chunks=row.chunks,
        chunks_total=row.chunks_total,
        attributes=json.loads(row.attributes_json or "{}"),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class RagRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def knowledge_base_row(self, knowledge_base_id: str) -> KnowledgeBaseRow | None:
        return await self._session.get(KnowledgeBaseRow, knowledge_base_id)

    async def owned(self, caller_id: str, knowledge_base_id: str) -> KnowledgeBaseRow:
        row = await self.knowledge_base_row(knowledge_base_id)
        if row is None or row.owner_id != caller_id:
            # Another user's knowledge base is as absent as one that never existed.
            raise NotFound(f"no vector store {knowledge_base_id}", param="vector_store_id")
        return row

    async def owned_document(self, caller_id: str, knowledge_base_id: str, file_id: str) -> DocumentRow:
        await self.owned(caller_id, knowledge_base_id)
        row = await self.document_row(knowledge_base_id, file_id)
        if row is None:
            raise NotFound(f"no file {file_id} in vector store {knowledge_base_id}", param="file_id")
        return row

    async def by_request(self, owner_id: str, client_request_id: str) -> KnowledgeBaseRow | None:
        row: KnowledgeBaseRow | None = await self._session.scalar(
            select(KnowledgeBaseRow).where(
                KnowledgeBaseRow.owner_id == owner_id,
                KnowledgeBaseRow.client_request_id == client_request_id,
            )
        )
        return row

    async def owned_by(self, owner_id: str) -> list[KnowledgeBaseRow]:
        rows = await self._session.scalars(
            select(KnowledgeBaseRow)
            .where(KnowledgeBaseRow.owner_id == owner_id)
            .order_by(KnowledgeBaseRow.created_at.desc())
        )
        return list(rows)

    async def counts(
        self, knowledge_base_ids: list[str], batch_id: str = ""
    ) -> dict[str, tuple[FileCounts, int]]:
        """Documents per status and bytes of each knowledge base (of one batch), in one query."""
        query = select(
            DocumentRow.knowledge_base_id,
            DocumentRow.status,
            func.count(),
            func.coalesce(func.sum(DocumentRow.bytes), 0),
        ).where(DocumentRow.knowledge_base_id.in_(knowledge_base_ids))
        if batch_id:
            query = query.where(DocumentRow.batch_id == batch_id)
        rows = await self._session.execute(query.group_by(DocumentRow.knowledge_base_id, DocumentRow.status))
        tallies: dict[str, dict[str, int]] = {}
        for kb_id, status, count, size in rows:
            tally = tallies.setdefault(kb_id, {"bytes": 0})
            tally[status] = count
            tally["bytes"] += int(size)
        return {
            kb_id: (
                FileCounts(
                    in_progress=t.get(DocumentStatus.in_progress, 0),
                    completed=t.get(DocumentStatus.completed, 0),
                    failed=t.get(DocumentStatus.failed, 0),
                ),
                t["bytes"],
            )
            for kb_id, t in tallies.items()
        }

    async def count_documents(self, status: DocumentStatus) -> int:
        """Documents in `status` over every knowledge base."""
        query = select(func.count()).select_from(DocumentRow).where(DocumentRow.status == status)
        return int(await self._session.scalar(query) or 0)

    async def with_counts(self, rows: list[KnowledgeBaseRow]) -> list[KnowledgeBase]:
        counts = await self.counts([row.id for row in rows]) if rows else {}
        return [knowledge_base_of(row, *counts.get(row.id, (FileCounts(), 0))) for row in rows]

    async def document_row(self, knowledge_base_id: str, file_id: str) -> DocumentRow | None:
        return await self._session.get(DocumentRow, (knowledge_base_id, file_id))

    async def documents(
        self, knowledge_base_id: str, status: str = "", batch_id: str = ""
    ) -> list[DocumentRow]:
        query = select(DocumentRow).where(DocumentRow.knowledge_base_id == knowledge_base_id)
        if status:
            query = query.where(DocumentRow.status == status)
        if batch_id:
            query = query.where(DocumentRow.batch_id == batch_id)
        return list(await self._session.scalars(query.order_by(DocumentRow.created_at)))

    async def delete_documents(self, knowledge_base_id: str) -> None:
        await self._session.execute(
            delete(DocumentRow).where(DocumentRow.knowledge_base_id == knowledge_base_id)
        )
