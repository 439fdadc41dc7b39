"""The auth service's tables (SQLAlchemy 2), on their own metadata."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, MetaData, String
from sqlalchemy.orm import Mapped, mapped_column

from suanli_common.db import Base, UtcDateTime
from suanli_common.outbox import OutboxMixin


class AuthBase(Base):
    __abstract__ = True
    metadata = MetaData()


class UserRow(AuthBase):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-cased
    password_hash: Mapped[str | None] = mapped_column(String(255))  # None: code sign-in only
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ApiKeyRow(AuthBase):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(12))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the secret
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class EmailCodeRow(AuthBase):
    __tablename__ = "email_codes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    code_hmac: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    consumed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class QuotaRow(AuthBase):
    __tablename__ = "quotas"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    resource: Mapped[str] = mapped_column(String(100), primary_key=True)
    limit: Mapped[int] = mapped_column(BigInteger)


class OutboxRow(OutboxMixin, AuthBase):
    """Events staged with the change they report, relayed to NATS by `suanli_common.outbox`."""
