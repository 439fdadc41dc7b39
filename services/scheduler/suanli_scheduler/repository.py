"""Queries against the scheduler's tables; rows in, domain objects out where callers need them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from suanli_scheduler.domain import Job, JobSpec, JobStatus
from suanli_scheduler.models import JobRow, NodeRow, PlacementRow, QuotaRow


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
    )


class JobRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, job_id: str, *, for_update: bool = False) -> JobRow | None:
        return await self.session.get(JobRow, job_id, with_for_update=for_update)

    async def by_request(self, owner_id: str, client_request_id: str) -> JobRow | None:
        return await self.session.scalar(
            select(JobRow).where(JobRow.owner_id == owner_id, JobRow.client_request_id == client_request_id)
        )

    async def list(self, owner_id: str | None, job_type: str | None, limit: int = 500) -> Sequence[JobRow]:
        query = select(JobRow).order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)
        if owner_id:
            query = query.where(JobRow.owner_id == owner_id)
        rows = (await self.session.scalars(query)).all()
        return [r for r in rows if not job_type or r.spec.get("job_type") == job_type]

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

    async def quota(self, owner_id: str, gpu_type: str) -> int | None:
        """The most specific quota: (owner, type), (owner, *), (*, type), (*, *); None: unlimited."""
        rows = (
            await self.session.scalars(
                select(QuotaRow).where(
                    QuotaRow.owner_id.in_([owner_id, "*"]), QuotaRow.gpu_type.in_([gpu_type, "*"])
                )
            )
        ).all()
        ranked = sorted(rows, key=lambda r: (r.owner_id == "*", r.gpu_type == "*"))
        return ranked[0].max_gpus if ranked else None
