"""The catalog's tables (SQLAlchemy 2), on their own metadata."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, MetaData, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from suanli_common.db import Base, UtcDateTime
from suanli_common.outbox import OutboxMixin


class CatalogBase(Base):
    __abstract__ = True
    metadata = MetaData()


class ModelRow(CatalogBase):
    __tablename__ = "catalog_models"
    # 255: a fine-tune's id embeds its base model's id (see models_service.MODEL_ID).
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    visibility: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(1024))
    path: Mapped[str] = mapped_column(String(1024), default="")
    architecture: Mapped[str] = mapped_column(String(128), default="")
    parameter_count: Mapped[int] = mapped_column(BigInteger, default=0)
    context_length: Mapped[int] = mapped_column(BigInteger, default=0)
    chat_template: Mapped[str] = mapped_column(Text, default="")
    base_model_id: Mapped[str] = mapped_column(String(255), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class FileRow(CatalogBase):
    __tablename__ = "catalog_files"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(40), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16))
    status_details: Mapped[str] = mapped_column(Text, default="")
    dataset_format: Mapped[str] = mapped_column(String(32), default="")
    examples: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    tokenizer: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class OutboxRow(OutboxMixin, CatalogBase):
    """Events staged with the change they report, relayed to NATS by `suanli_common.outbox`.
    Prefixed like the other tables, so the catalog can share a PostgreSQL database."""

    __tablename__ = "catalog_outbox"
