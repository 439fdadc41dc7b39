"""The auth service's tables (SQLAlchemy 2), on their own metadata."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, MetaData, String
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


# metering: the ledger records facts as they were told, so it has no foreign keys (a fact about a
# user may arrive before or after anything else) and its rows are never updated but to close.


class TokenUsageRow(AuthBase):
    """One usage.recorded fact; the id is the event's envelope id, so a redelivery is a no-op."""

    __tablename__ = "usage_tokens"
    __table_args__ = (Index("ix_usage_tokens_user_id_at", "user_id", "at"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(255))
    deployment_id: Mapped[str] = mapped_column(String(64))
    endpoint: Mapped[str] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UtcDateTime())  # when the request was answered
    # The UTC day of `at` ("YYYY-MM-DD"): grouping by it is the same SQL on SQLite and PostgreSQL.
    day: Mapped[str] = mapped_column(String(10))
    cost_micros: Mapped[int] = mapped_column(BigInteger)  # at the prices in force when recorded


class GpuIntervalRow(AuthBase):
    """GPU slots held by one attempt of a job or by a deployment (attempt 0), from its start fact to
    its end fact. started_at is None while only the end has arrived (facts can come out of order)."""

    __tablename__ = "usage_gpu_intervals"
    __table_args__ = (Index("ix_usage_gpu_intervals_owner_id", "owner_id"),)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64))
    gpu_type: Mapped[str] = mapped_column(String(100))
    gpus: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    price_micros_per_hour: Mapped[int] = mapped_column(BigInteger)  # per GPU, captured at the start
    model: Mapped[str] = mapped_column(String(255))
    job_type: Mapped[str] = mapped_column(String(32))


class PriceRow(AuthBase):
    __tablename__ = "prices"
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    price_micros: Mapped[int] = mapped_column(BigInteger)


class CreditRow(AuthBase):
    __tablename__ = "credits"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(String(500))
    actor_user_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class OutboxRow(OutboxMixin, AuthBase):
    """Events staged with the change they report, relayed to NATS by `suanli_common.outbox`."""
