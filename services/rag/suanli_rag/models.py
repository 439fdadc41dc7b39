"""The rag service's tables (SQLAlchemy 2), on their own metadata. The chunks themselves live in
Qdrant; these rows say which documents a knowledge base has and how far each got."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from suanli_common.db import Base, UtcDateTime
from suanli_common.outbox import OutboxMixin


class RagBase(Base):
    __abstract__ = True
    metadata = MetaData()


class KnowledgeBaseRow(RagBase):
    __tablename__ = "rag_knowledge_bases"
    __table_args__ = (UniqueConstraint("owner_id", "client_request_id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(40), index=True)
    client_request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    model: Mapped[str] = mapped_column(String(255))
    embedding_model: Mapped[str] = mapped_column(String(255))
    chunk_max_tokens: Mapped[int] = mapped_column(Integer)
    chunk_overlap_tokens: Mapped[int] = mapped_column(Integer)
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_active_at: Mapped[datetime] = mapped_column(UtcDateTime())


class DocumentRow(RagBase):
    __tablename__ = "rag_documents"
    knowledge_base_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    file_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(40))
    filename: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    # A new one for each indexing of the document: work of an older attempt is stale and skipped.
    attempt_id: Mapped[str] = mapped_column(String(40))
    # Earlier attempts may have left points (a re-index, a retry): the attempt removes them when done.
    # A new document has none, and skips that search through the collection.
    replaces_points: Mapped[bool] = mapped_column(Boolean, default=False)
    error_code: Mapped[str] = mapped_column(String(32), default="")
    error_message: Mapped[str] = mapped_column(Text, default="")
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    attributes_json: Mapped[str] = mapped_column(Text, default="{}")
    batch_id: Mapped[str] = mapped_column(String(40), default="")  # the file batch that last attached it
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class DocumentBatchRow(RagBase):
    __tablename__ = "rag_document_batches"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    knowledge_base_id: Mapped[str] = mapped_column(String(40), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class OutboxRow(OutboxMixin, RagBase):
    __tablename__ = "rag_outbox"
