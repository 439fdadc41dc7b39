"""Queries against the scheduler's tables; rows in, domain objects out where callers need them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from suanli_scheduler.domain import (
    HOLDING_SLOTS,
    Deployment,
    DeploymentSpec,
    DeploymentStatus,
    Job,
    JobSpec,
    JobStatus,
)
from suanli_scheduler.models import DeploymentRow, InstanceRow, JobRow, NodeRow, PlacementRow, QuotaRow
from suanli_scheduler.quotas import QuotaTable


@dataclass(frozen=True, slots=True)
class UnplacedJob:
    """What a placement needs of a queued job's row."""

    id: str
    attempt: int
    owner_id: str
    traceparent: str


def job_from_row(row: JobRow) -> Job:
    return Job(
        id=row.id,
        owner_id=row.owner_id,
        spec=JobSpec.from_json(row.spec),
        status=JobStatus(row.status),
        status_reason=row.status_reason,
        attempt=row.attempt,
        lease_id=row.lease_id,
        node_ids=list(row.node_ids or []),
        progress=row.progress,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        result_json=row.result_json or "",
        endpoint=row.endpoint or "",
    )


def deployment_from_row(row: DeploymentRow) -> Deployment:
    return Deployment(
        id=row.id,
        owner_id=row.owner_id,
        spec=DeploymentSpec.from_json(row.spec),
        status=DeploymentStatus(row.status),
        status_reason=row.status_reason,
        gpu_type=row.gpu_type,
        node_ids=list(row.node_ids or []),
        endpoint=row.endpoint,
        ready_replicas=row.ready_replicas,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


T = TypeVar("T")
_CHUNK = 500  # ids per IN (...) list, well under every database's limit on bound parameters


def _chunks(items: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class JobRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, job_id: str, *, for_update: bool = False) -> JobRow | None:
        return await self.session.get(JobRow, job_id, with_for_update=for_update)

    async def jobs(self, job_ids: Sequence[str]) -> dict[str, JobRow]:
        """These jobs, by id (one statement per chunk instead of one per job)."""
        found: dict[str, JobRow] = {}
        for ids in _chunks(job_ids):
            query = select(JobRow).where(JobRow.id.in_(ids)).with_for_update()
            found.update((row.id, row) for row in (await self.session.scalars(query)).all())
        return found

    async def placements_of(
        self, attempts: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], list[PlacementRow]]:
        """The placements of these (job, attempt) pairs, in node rank order, keyed by the pair;
        a pair without placements maps to an empty list."""
        found: dict[tuple[str, int], list[PlacementRow]] = {pair: [] for pair in attempts}
        # By job id alone, the pairs picked out here: SQLite answers a row-value IN list
        # (`(job_id, attempt) IN (...)`) with a scan of the whole table, which grows with history.
        job_ids = list({job_id for job_id, _ in found})
        for ids in _chunks(job_ids):
            query = (
                select(PlacementRow)
                .where(PlacementRow.job_id.in_(ids))
                .order_by(PlacementRow.job_id, PlacementRow.attempt, PlacementRow.node_rank)
            )
            for row in (await self.session.scalars(query)).all():
                rows = found.get((row.job_id, row.attempt))
                if rows is not None:
                    rows.append(row)
        return found

    async def by_request(self, owner_id: str, client_request_id: str) -> JobRow | None:
        return await self.session.scalar(
            select(JobRow).where(JobRow.owner_id == owner_id, JobRow.client_request_id == client_request_id)
        )

    async def by_requests(self, requests: Sequence[tuple[str, str]]) -> dict[tuple[str, str], JobRow]:
        """Jobs already stored for (owner, client request id) pairs, keyed by the pair."""
        wanted = set(requests)
        found: dict[tuple[str, str], JobRow] = {}
        for chunk in _chunks(list(wanted)):
            # Two IN lists over the unique (owner, request id) index rather than one row-value IN,
            # which SQLite answers by scanning every job; the pairs are picked out here.
            query = select(JobRow).where(
                JobRow.owner_id.in_({owner for owner, _ in chunk}),
                JobRow.client_request_id.in_({request for _, request in chunk}),
            )
            for row in (await self.session.scalars(query)).all():
                key = (row.owner_id, row.client_request_id or "")
                if key in wanted:
                    found[key] = row
        return found

    async def unplaced(self, job_ids: Sequence[str]) -> dict[str, UnplacedJob]:
        """Of these jobs, the ones still queued without a placement, for update, by id (the few
        columns a placement needs, not ORM rows: a pass may place thousands)."""
        found: dict[str, UnplacedJob] = {}
        for ids in _chunks(job_ids):
            query = (
                select(JobRow.id, JobRow.attempt, JobRow.owner_id, JobRow.traceparent)
                .where(JobRow.id.in_(ids), JobRow.status == JobStatus.queued.value, JobRow.lease_id == "")
                .with_for_update()
            )
            for job_id, attempt, owner_id, traceparent in await self.session.execute(query):
                found[job_id] = UnplacedJob(job_id, attempt, owner_id, traceparent or "")
        return found

    async def mark_placed(self, placed: Sequence[dict[str, object]]) -> None:
        """Gives placed jobs their lease, nodes and reason (keys b_id, b_lease, b_nodes, b_reason),
        as one executemany, only where each is still queued and unplaced."""
        if not placed:
            return
        jobs = JobRow.__table__
        statement = (
            update(jobs)
            .where(
                jobs.c.id == bindparam("b_id"), jobs.c.status == JobStatus.queued.value, jobs.c.lease_id == ""
            )
            .values(
                lease_id=bindparam("b_lease"),
                node_ids=bindparam("b_nodes", type_=jobs.c.node_ids.type),
                status_reason=bindparam("b_reason"),
            )
        )
        await self.session.execute(statement, list(placed))

    async def set_waiting_reason(self, job_ids: Sequence[str], reason: str) -> None:
        """Says why these jobs still wait (only where they still do), in one statement per chunk."""
        for ids in _chunks(job_ids):
            await self.session.execute(
                update(JobRow)
                .where(JobRow.id.in_(ids), JobRow.status == JobStatus.queued.value, JobRow.lease_id == "")
                .values(status_reason=reason)
                .execution_options(synchronize_session=False)
            )

    async def list(self, owner_id: str | None, job_type: str | None, limit: int = 500) -> Sequence[JobRow]:
        query = select(JobRow).order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)
        if owner_id:
            query = query.where(JobRow.owner_id == owner_id)
        if job_type:
            # Filtered in the query, not after the limit, so a user's many jobs of one type do not
            # hide the few of another (`spec ->> 'job_type'` on PostgreSQL, json_extract on SQLite).
            query = query.where(JobRow.spec["job_type"].as_string() == job_type)
        return (await self.session.scalars(query)).all()

    async def waiting(self) -> Sequence[JobRow]:
        """Queued jobs not placed yet, in the order they should be served: priority, then FIFO."""
        query = (
            select(JobRow)
            .where(JobRow.status == JobStatus.queued.value, JobRow.lease_id == "")
            .order_by(JobRow.priority.desc(), JobRow.created_at, JobRow.id)
        )
        return (await self.session.scalars(query)).all()

    async def holding_leases(self) -> Sequence[JobRow]:
        query = select(JobRow).where(
            JobRow.status.in_([JobStatus.queued.value, JobStatus.preparing.value, JobStatus.running.value]),
            JobRow.lease_id != "",
        )
        return (await self.session.scalars(query)).all()

    async def placements(self, job_id: str, attempt: int) -> Sequence[PlacementRow]:
        query = (
            select(PlacementRow)
            .where(PlacementRow.job_id == job_id, PlacementRow.attempt == attempt)
            .order_by(PlacementRow.node_rank)
        )
        return (await self.session.scalars(query)).all()

    async def nodes(self) -> Sequence[NodeRow]:
        return (await self.session.scalars(select(NodeRow))).all()

    async def quotas(self) -> QuotaTable:
        return QuotaTable((await self.session.scalars(select(QuotaRow))).all())

    async def count_by_type_and_status(self) -> dict[tuple[str, str], int]:
        """(job type, status) -> how many jobs are in it."""
        job_type = JobRow.spec["job_type"].as_string()
        query = select(job_type, JobRow.status, func.count()).group_by(job_type, JobRow.status)
        return {(str(kind), str(status)): int(n) for kind, status, n in await self.session.execute(query)}


class DeploymentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, deployment_id: str, *, for_update: bool = False) -> DeploymentRow | None:
        return await self.session.get(DeploymentRow, deployment_id, with_for_update=for_update)

    async def by_request(self, owner_id: str, client_request_id: str) -> DeploymentRow | None:
        return await self.session.scalar(
            select(DeploymentRow).where(
                DeploymentRow.owner_id == owner_id, DeploymentRow.client_request_id == client_request_id
            )
        )

    async def list(
        self, owner_id: str | None, include_public: bool, limit: int = 500
    ) -> Sequence[DeploymentRow]:
        """Deployments not stopped, newest first: every one (owner None), or the owner's and, with
        include_public, the public ones."""
        query = (
            select(DeploymentRow)
            .where(DeploymentRow.status != DeploymentStatus.stopped.value)
            .order_by(DeploymentRow.created_at.desc(), DeploymentRow.id.desc())
            .limit(limit)
        )
        if owner_id:
            mine = DeploymentRow.owner_id == owner_id
            query = query.where(or_(mine, DeploymentRow.public.is_(True)) if include_public else mine)
        return (await self.session.scalars(query)).all()

    async def pending(self, *, for_update: bool = False) -> Sequence[DeploymentRow]:
        """Deployments waiting for slots, oldest first (the order they are served in)."""
        query = (
            select(DeploymentRow)
            .where(DeploymentRow.status == DeploymentStatus.pending.value)
            .order_by(DeploymentRow.created_at, DeploymentRow.id)
        )
        if for_update:
            query = query.with_for_update()
        return (await self.session.scalars(query)).all()

    async def count_by_status(self) -> dict[str, int]:
        query = select(DeploymentRow.status, func.count()).group_by(DeploymentRow.status)
        return {str(status): int(n) for status, n in await self.session.execute(query)}

    async def holding_slots(self) -> Sequence[DeploymentRow]:
        query = select(DeploymentRow).where(DeploymentRow.status.in_([s.value for s in HOLDING_SLOTS]))
        return (await self.session.scalars(query)).all()


class InstanceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, instance_id: str, *, for_update: bool = False) -> InstanceRow | None:
        return await self.session.get(InstanceRow, instance_id, with_for_update=for_update)

    async def by_name(self, owner_id: str, name: str) -> InstanceRow | None:
        return await self.session.scalar(
            select(InstanceRow).where(InstanceRow.owner_id == owner_id, InstanceRow.active_name == name)
        )

    async def list(self, owner_id: str | None, limit: int = 500) -> Sequence[InstanceRow]:
        """Instances not deleted, newest first: the owner's, or every one (owner None)."""
        query = (
            select(InstanceRow)
            .where(InstanceRow.desired != "deleted")
            .order_by(InstanceRow.created_at.desc(), InstanceRow.id.desc())
            .limit(limit)
        )
        if owner_id:
            query = query.where(InstanceRow.owner_id == owner_id)
        return (await self.session.scalars(query)).all()

    async def runs(self, job_ids: Sequence[str]) -> dict[str, JobRow]:
        """The instances' current runs, by job id (read only: no rows are locked)."""
        found: dict[str, JobRow] = {}
        for ids in _chunks([i for i in job_ids if i]):
            found.update(
                (row.id, row)
                for row in (await self.session.scalars(select(JobRow).where(JobRow.id.in_(ids)))).all()
            )
        return found
