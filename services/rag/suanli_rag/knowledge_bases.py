"""Knowledge bases and their documents: create, list, delete, attach a file, re-index. Every
change that starts ingestion stages a `document.uploaded` event in the same transaction, so a
document is never left `in_progress` with no work queued for it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from suanli_common.db import Database
from suanli_common.errors import InvalidRequest, NotFound, PayloadTooLarge
from suanli_common.ids import new_id
from suanli_common.outbox import Outbox
from suanli_common.proto.suanli.v1.events_pb2 import DocumentChanged
from suanli_rag.catalog_files import CatalogFile, CatalogFiles
from suanli_rag.chunking import ChunkingConfig
from suanli_rag.domain import (
    Document,
    DocumentBatch,
    DocumentStatus,
    FileCounts,
    KnowledgeBase,
    NewKnowledgeBase,
)
from suanli_rag.embeddings import PACKAGED_MODEL, Embedders
from suanli_rag.events import DOCUMENT_UPLOADED
from suanli_rag.index import ChunkIndex
from suanli_rag.models import DocumentBatchRow, DocumentRow, KnowledgeBaseRow
from suanli_rag.parsing import SUPPORTED_EXTENSIONS, document_kind
from suanli_rag.repository import RagRepository, document_of

ASSISTANTS = "assistants"
MAX_ATTRIBUTES = 16
MAX_NAME = 256
MAX_DESCRIPTION = 512
MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class Limits:
    max_document_bytes: int
    default_chunking: ChunkingConfig


def _now() -> datetime:
    return datetime.now(UTC)


def checked_chunking(max_tokens: int, overlap_tokens: int) -> ChunkingConfig:
    try:
        return ChunkingConfig(max_tokens=max_tokens, overlap_tokens=overlap_tokens)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="chunking_strategy") from None


def checked_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidRequest(f"at most {MAX_ATTRIBUTES} attributes", param="attributes")
    for key, value in attributes.items():
        if (
            len(key) > 64
            or not isinstance(value, str | int | float | bool)
            or (isinstance(value, str) and len(value) > 512)
        ):
            raise InvalidRequest(
                f"attribute {key!r}: keys have at most 64 characters, values are numbers, booleans "
                "or strings of at most 512 characters",
                param="attributes",
            )
    return attributes


def uploaded_event(row: DocumentRow) -> DocumentChanged:
    return DocumentChanged(
        knowledge_base_id=row.knowledge_base_id,
        file_id=row.file_id,
        owner_id=row.owner_id,
        attempt_id=row.attempt_id,
    )


class KnowledgeBases:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        catalog: CatalogFiles,
        index: ChunkIndex,
        embedders: Embedders,
        limits: Limits,
    ) -> None:
        self._db = db
        self._embedders = embedders
        self._outbox = outbox
        self._catalog = catalog
        self._index = index
        self._limits = limits

    async def create(
        self,
        owner_id: str,
        new: NewKnowledgeBase,
        client_request_id: str = "",
        file_ids: tuple[str, ...] = (),
    ) -> KnowledgeBase:
        if not new.model:
            raise InvalidRequest("a knowledge base needs the chat model that answers from it", param="model")
        if len(new.name) > MAX_NAME:
            raise InvalidRequest(f"the name is longer than {MAX_NAME} characters", param="name")
        if len(new.description) > MAX_DESCRIPTION:
            raise InvalidRequest(
                f"the description is longer than {MAX_DESCRIPTION} characters", param="description"
            )
        defaults = self._limits.default_chunking
        chunking = checked_chunking(
            new.chunk_max_tokens or defaults.max_tokens,
            new.chunk_overlap_tokens if new.chunk_max_tokens else defaults.overlap_tokens,
        )
        embedding_model = new.embedding_model or PACKAGED_MODEL
        await self._embedders.check(owner_id, embedding_model)
        files = [await self._attachable(owner_id, file_id) for file_id in dict.fromkeys(file_ids)]
        now = _now()
        row = KnowledgeBaseRow(
            id=new_id("vs"),
            owner_id=owner_id,
            client_request_id=client_request_id or None,
            name=new.name,
            description=new.description,
            model=new.model,
            embedding_model=embedding_model,
            chunk_max_tokens=chunking.max_tokens,
            chunk_overlap_tokens=chunking.overlap_tokens,
            metadata_json=json.dumps(new.metadata),
            created_at=now,
            last_active_at=now,
        )
        try:
            async with self._db.session() as session:
                repo = RagRepository(session)
                if client_request_id and (found := await repo.by_request(owner_id, client_request_id)):
                    return (await repo.with_counts([found]))[0]
                session.add(row)
                for file in files:
                    self._stage_document(session, row, file.id, file.filename, file.bytes, {})
                await session.flush()
                return (await repo.with_counts([row]))[0]
        except IntegrityError:  # the same request, committed by a concurrent retry
            async with self._db.session() as session:
                repo = RagRepository(session)
                found = await repo.by_request(owner_id, client_request_id)
                if found is None:
                    raise
                return (await repo.with_counts([found]))[0]

    async def get(self, caller_id: str, knowledge_base_id: str) -> KnowledgeBase:
        async with self._db.session() as session:
            repo = RagRepository(session)
            return (await repo.with_counts([await repo.owned(caller_id, knowledge_base_id)]))[0]

    async def owned_by(self, caller_id: str) -> list[KnowledgeBase]:
        async with self._db.session() as session:
            repo = RagRepository(session)
            return await repo.with_counts(await repo.owned_by(caller_id))

    async def delete(self, caller_id: str, knowledge_base_id: str) -> KnowledgeBase:
        async with self._db.session() as session:
            repo = RagRepository(session)
            row = await repo.owned(caller_id, knowledge_base_id)
            deleted = (await repo.with_counts([row]))[0]
            await repo.delete_documents(row.id)
            await session.delete(row)
        # After the commit: ingestion still running for it finds no document row and stops.
        await self._index.drop(knowledge_base_id)
        return deleted

    async def reindex(
        self, caller_id: str, knowledge_base_id: str, max_tokens: int, overlap_tokens: int
    ) -> KnowledgeBase:
        chunking = checked_chunking(max_tokens, overlap_tokens)
        async with self._db.session() as session:
            repo = RagRepository(session)
            row = await repo.owned(caller_id, knowledge_base_id)
            row.chunk_max_tokens, row.chunk_overlap_tokens = chunking.max_tokens, chunking.overlap_tokens
            row.last_active_at = _now()
            for document in await repo.documents(row.id):
                self._index_again(session, document)
            await session.flush()
            return (await repo.with_counts([row]))[0]

    async def add_document(
        self, caller_id: str, knowledge_base_id: str, file_id: str, attributes: dict[str, Any]
    ) -> Document:
        attributes = checked_attributes(attributes)
        async with self._db.session() as session:
            await RagRepository(session).owned(caller_id, knowledge_base_id)
        file = await self._attachable(caller_id, file_id)
        async with self._db.session() as session:
            repo = RagRepository(session)
            row = await repo.owned(caller_id, knowledge_base_id)
            row.last_active_at = _now()
            document = await self._attach(session, repo, row, file, attributes)
            await session.flush()
            return document_of(document)

    async def create_batch(
        self, caller_id: str, knowledge_base_id: str, files: list[tuple[str, dict[str, Any]]]
    ) -> DocumentBatch:
        """Attaches several files at once: all of them, or none when one cannot be a document."""
        if not 0 < len(files) <= MAX_BATCH:
            raise InvalidRequest(f"a batch has 1 to {MAX_BATCH} files", param="file_ids")
        unique = dict(files)  # a file named twice is attached once, with its last attributes
        checked = [(file_id, checked_attributes(attributes)) for file_id, attributes in unique.items()]
        async with self._db.session() as session:
            await RagRepository(session).owned(caller_id, knowledge_base_id)
        attachable = [
            (await self._attachable(caller_id, file_id), attributes) for file_id, attributes in checked
        ]
        async with self._db.session() as session:
            repo = RagRepository(session)
            row = await repo.owned(caller_id, knowledge_base_id)
            row.last_active_at = _now()
            batch = DocumentBatchRow(
                id=new_id("vsfb"), knowledge_base_id=row.id, created_at=row.last_active_at
            )
            session.add(batch)
            for file, attributes in attachable:
                document = await self._attach(session, repo, row, file, attributes)
                document.batch_id = batch.id
            await session.flush()
            return await self._batch_of(repo, batch)

    async def get_batch(self, caller_id: str, knowledge_base_id: str, batch_id: str) -> DocumentBatch:
        async with self._db.session() as session:
            repo = RagRepository(session)
            await repo.owned(caller_id, knowledge_base_id)
            batch = await session.get(DocumentBatchRow, batch_id)
            if batch is None or batch.knowledge_base_id != knowledge_base_id:
                raise NotFound(
                    f"no file batch {batch_id} in vector store {knowledge_base_id}", param="batch_id"
                )
            return await self._batch_of(repo, batch)

    @staticmethod
    async def _batch_of(repo: RagRepository, batch: DocumentBatchRow) -> DocumentBatch:
        counts, _ = (await repo.counts([batch.knowledge_base_id], batch.id)).get(
            batch.knowledge_base_id, (FileCounts(), 0)
        )
        return DocumentBatch(batch.id, batch.knowledge_base_id, batch.created_at, counts)

    async def _attach(
        self,
        session: AsyncSession,
        repo: RagRepository,
        kb: KnowledgeBaseRow,
        file: CatalogFile,
        attributes: dict[str, Any],
    ) -> DocumentRow:
        """The document of a file: new, as it is, or indexed again when its last attempt failed."""
        if existing := await repo.document_row(kb.id, file.id):
            if existing.status == DocumentStatus.failed:
                self._index_again(session, existing)
            return existing
        return self._stage_document(session, kb, file.id, file.filename, file.bytes, attributes)

    async def get_document(self, caller_id: str, knowledge_base_id: str, file_id: str) -> Document:
        async with self._db.session() as session:
            return document_of(
                await RagRepository(session).owned_document(caller_id, knowledge_base_id, file_id)
            )

    async def list_documents(
        self, caller_id: str, knowledge_base_id: str, status: str = "", batch_id: str = ""
    ) -> list[Document]:
        # OpenAI's "cancelled" is a valid filter that matches nothing here (ingestion is not cancelled).
        if status and status not in (*DocumentStatus.__members__, "cancelled"):
            raise InvalidRequest(f"unknown status {status!r}", param="filter")
        async with self._db.session() as session:
            repo = RagRepository(session)
            await repo.owned(caller_id, knowledge_base_id)
            return [document_of(row) for row in await repo.documents(knowledge_base_id, status, batch_id)]

    async def delete_document(self, caller_id: str, knowledge_base_id: str, file_id: str) -> Document:
        async with self._db.session() as session:
            row = await RagRepository(session).owned_document(caller_id, knowledge_base_id, file_id)
            deleted = document_of(row)
            await session.delete(row)
        await self._index.delete_document(knowledge_base_id, file_id)
        return deleted

    async def _attachable(self, owner_id: str, file_id: str) -> CatalogFile:
        """The catalog file, once it is known to be a document this service can index."""
        file = await self._catalog.get(owner_id, file_id)
        if file.purpose != ASSISTANTS:
            raise InvalidRequest(
                f"file {file_id} was uploaded with purpose {file.purpose!r}; documents use 'assistants'",
                param="file_id",
                code="invalid_file_purpose",
            )
        if document_kind(file.filename) is None:
            raise InvalidRequest(
                f"{file.filename!r} is not a supported document; supported: "
                + ", ".join(sorted(SUPPORTED_EXTENSIONS)),
                param="file_id",
                code="unsupported_file",
            )
        if file.bytes > self._limits.max_document_bytes:
            raise PayloadTooLarge(
                f"{file.filename!r} has {file.bytes} bytes; a document may have at most "
                f"{self._limits.max_document_bytes}",
                param="file_id",
                code="file_too_large",
            )
        return file

    def _stage_document(
        self,
        session: AsyncSession,
        kb: KnowledgeBaseRow,
        file_id: str,
        filename: str,
        size: int,
        attributes: dict[str, Any],
    ) -> DocumentRow:
        now = _now()
        document = DocumentRow(
            knowledge_base_id=kb.id,
            file_id=file_id,
            owner_id=kb.owner_id,
            filename=filename,
            bytes=size,
            status=DocumentStatus.in_progress,
            attempt_id=new_id("ing"),
            replaces_points=False,
            error_code="",
            error_message="",
            chunks=0,
            chunks_total=0,
            attributes_json=json.dumps(attributes),
            created_at=now,
            updated_at=now,
        )
        session.add(document)
        self._outbox.add(session, DOCUMENT_UPLOADED, kb.id, uploaded_event(document))
        return document

    def _index_again(self, session: AsyncSession, document: DocumentRow) -> None:
        """A new attempt for a document: the running one, if any, is stale from now on."""
        document.attempt_id = new_id("ing")
        document.replaces_points = True
        document.status = DocumentStatus.in_progress
        document.error_code = document.error_message = ""
        document.chunks = document.chunks_total = 0
        document.updated_at = _now()
        self._outbox.add(session, DOCUMENT_UPLOADED, document.knowledge_base_id, uploaded_event(document))
