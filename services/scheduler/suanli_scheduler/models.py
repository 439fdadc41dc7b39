"""The scheduler's tables (SQLAlchemy 2), on their own metadata."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from suanli_common.db import Base, UtcDateTime
from suanli_common.outbox import OutboxMixin


class SchedulerBase(Base):
    __abstract__ = True
    metadata = MetaData()


class JobRow(SchedulerBase):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("owner_id", "client_request_id", name="uq_jobs_request"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64), index=True)
    client_request_id: Mapped[str | None] = mapped_column(String(128))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), index=True)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_id: Mapped[str] = mapped_column(String(40), default="")
    node_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Rank 0's <output>/result.json, set when the job succeeds (a late report may bring it after).
    result_json: Mapped[str | None] = mapped_column(Text, default=None)
    # The submitter's trace: the offers of every attempt, and so the agent's run, continue it.
    traceparent: Mapped[str] = mapped_column(String(128), default="")
    # An instance's run: host:port its server answers on, as the agent reported with RUNNING.
    endpoint: Mapped[str] = mapped_column(String(255), default="")


class PlacementRow(SchedulerBase):
    """One node's share of one attempt of a job (a gang has one row per node)."""

    __tablename__ = "placements"
    job_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[str] = mapped_column(String(128), index=True)
    gpu_type: Mapped[str] = mapped_column(String(64))
    slots: Mapped[int] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text, default="")
    master_port: Mapped[int] = mapped_column(Integer, default=0)
    # What this node's succeeded report carried, kept until the whole gang has succeeded.
    result_json: Mapped[str | None] = mapped_column(Text, default=None)


class NodeRow(SchedulerBase):
    """Every node ever seen and its inventory, so bad requests are refused even while it is away."""

    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    address: Mapped[str] = mapped_column(String(255), default="")
    inventory: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    container_runtime: Mapped[str] = mapped_column(String(16), default="")
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime())
    cpu_millis: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    # Instance kinds it cannot run -> why (the agent's words).
    unavailable_kinds: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


class QuotaRow(SchedulerBase):
    """Most GPU slots a user may hold at once: of one type, or (gpu_type "*") of every type
    together; owner "*" is the default for every user. Kept from auth's quota.set facts."""

    __tablename__ = "quotas"
    owner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    gpu_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    max_gpus: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(BigInteger, default=0)  # the fact's; an older one is ignored


class DeploymentRow(SchedulerBase):
    """A deployment; its slots are claims on the ledger, one per replica, rebuilt from `node_ids`
    (replica i holds gpu_count slots of `gpu_type` on node_ids[i]) after a restart."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("owner_id", "client_request_id", name="uq_deployments_request"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64), index=True)
    client_request_id: Mapped[str | None] = mapped_column(String(128))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    public: Mapped[bool] = mapped_column(Boolean, default=False)  # spec.public, queryable
    status: Mapped[str] = mapped_column(String(16), index=True)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    gpu_type: Mapped[str] = mapped_column(String(64), default="")
    node_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    endpoint: Mapped[str] = mapped_column(Text, default="")
    ready_replicas: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class InstanceRow(SchedulerBase):
    """An instance: its spec and the state its owner wants; each start is a job (`job_id` is the
    current run), whose status the instance's status is derived from."""

    __tablename__ = "instances"
    # `active_name` is the name until the instance is deleted, then NULL: names are unique among
    # an owner's instances that are not deleted (NULLs never collide).
    __table_args__ = (UniqueConstraint("owner_id", "active_name", name="uq_instances_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    active_name: Mapped[str | None] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    token: Mapped[str] = mapped_column(String(128))
    desired: Mapped[str] = mapped_column(String(16))  # running | stopped | deleted
    job_id: Mapped[str] = mapped_column(String(40), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class OutboxRow(OutboxMixin, SchedulerBase):
    """Events staged with the change they report, relayed to NATS by `suanli_common.outbox`."""
