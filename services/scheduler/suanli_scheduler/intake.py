"""The submit path: checks a job against the cluster and the owner's quota and stores it queued.

Submits that arrive together are stored together, in one transaction (`batching`); a repeated
client request id returns the job stored the first time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import context as otel_context
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from suanli_common.errors import InvalidRequest
from suanli_common.ids import new_id
from suanli_common.telemetry import current_traceparent
from suanli_scheduler.batching import Outcome
from suanli_scheduler.domain import JobSpec, JobStatus
from suanli_scheduler.ledger import NodeInventory
from suanli_scheduler.models import JobRow
from suanli_scheduler.placement import PlacementRequest, check_feasible
from suanli_scheduler.quotas import QuotaTable
from suanli_scheduler.repository import JobRepository
from suanli_scheduler.state import SchedulerState, now_utc, placement_request
from suanli_scheduler.waiting import WaitingJob


class ClusterView:
    """The cluster as a batch of submits sees it: the nodes, their GPU types, and what each kind of
    request was found to need, so a batch of like jobs checks feasibility once, not once each."""

    def __init__(self, nodes: Sequence[NodeInventory]) -> None:
        self.nodes = nodes
        self.gpu_types = sorted({pool.gpu_type for node in nodes for pool in node.pools})
        self._verdicts: dict[PlacementRequest, InvalidRequest | None] = {}

    def check_feasible(self, request: PlacementRequest) -> None:
        if request not in self._verdicts:
            try:
                check_feasible(request, self.nodes)
                self._verdicts[request] = None
            except InvalidRequest as exc:
                self._verdicts[request] = exc
        if (problem := self._verdicts[request]) is not None:
            raise type(problem)(problem.message, code=problem.code, param=problem.param)


_JOB_COLUMNS = tuple(column.key for column in JobRow.__table__.columns)


def _values(row: JobRow) -> dict[str, object]:
    return {key: getattr(row, key) for key in _JOB_COLUMNS}


@dataclass(frozen=True, slots=True)
class Submission:
    owner_id: str
    client_request_id: str
    spec: JobSpec
    trace: otel_context.Context  # the caller's, so the job.queued event joins its trace


class Intake:
    def __init__(self, state: SchedulerState) -> None:
        self._state = state

    async def insert_jobs(self, batch: Sequence[Submission]) -> list[Outcome[JobRow]]:
        """Stores a batch of submits in one transaction. Needs no lock: it only adds queued jobs,
        and reads the ledger (for feasibility) without awaiting in between."""
        try:
            outcomes, rows = await self._insert_batch(batch)
        except IntegrityError as exc:
            if len(batch) > 1:  # find the one that collided: apply each on its own
                return [item for sub in batch for item in await self.insert_jobs([sub])]
            # Another scheduler instance stored the same request first.
            async with self._state.db.session() as session:
                found = await JobRepository(session).by_request(batch[0].owner_id, batch[0].client_request_id)
            return [found if found is not None else exc]
        for row in rows:
            self._state.waiting.add(WaitingJob.from_row(row))
        return outcomes

    async def _insert_batch(self, batch: Sequence[Submission]) -> tuple[list[Outcome[JobRow]], list[JobRow]]:
        outcomes: list[Outcome[JobRow]] = []
        inserted: list[JobRow] = []
        async with self._state.db.session() as session:
            repo = JobRepository(session)
            requests = [(s.owner_id, s.client_request_id) for s in batch if s.client_request_id]
            existing = await repo.by_requests(requests) if requests else {}
            quotas = await self._state.quotas(session)
            # The ledger knows every node ever seen (restored from the database at start), so
            # feasibility needs no read of the node table.
            cluster = ClusterView(self._state.ledger.inventories())
            for sub in batch:
                key = (sub.owner_id, sub.client_request_id)
                if sub.client_request_id and key in existing:
                    outcomes.append(existing[key])
                    continue
                try:
                    row = self.new_job(session, sub, cluster, quotas, add=False)
                except InvalidRequest as exc:
                    outcomes.append(exc)
                    continue
                if sub.client_request_id:
                    existing[key] = row  # the same request twice in one batch: one job
                outcomes.append(row)
                inserted.append(row)
            if inserted:
                # One multi-row INSERT for the batch, not a unit-of-work object per job: the rows
                # are only read back by later transactions.
                await session.execute(insert(JobRow.__table__), [_values(row) for row in inserted])
        return outcomes, inserted

    def new_job(
        self,
        session: AsyncSession,
        sub: Submission,
        nodes: Sequence[NodeInventory] | ClusterView,
        quotas: QuotaTable,
        *,
        add: bool = True,
    ) -> JobRow:
        """Checks one submit against the cluster and quotas and adds its queued job to the session
        (the instance service starts its runs through this too); the caller queues it after commit.
        With `add` False the row is not added: the caller inserts it itself."""
        spec = sub.spec
        cluster = nodes if isinstance(nodes, ClusterView) else ClusterView(nodes)
        cluster.check_feasible(placement_request(spec))
        if problem := quotas.never_fits(sub.owner_id, spec.gpu_type, spec.total_gpus, cluster.gpu_types):
            raise InvalidRequest(f"the job can never run: {problem}", param="gpus_per_node")
        row = JobRow(
            id=new_id("job"),
            owner_id=sub.owner_id,
            client_request_id=sub.client_request_id or None,
            spec=spec.to_json(),
            priority=spec.priority,
            status=JobStatus.queued.value,
            status_reason="waiting for placement",
            attempt=1,
            lease_id="",
            node_ids=[],
            progress=0.0,
            created_at=now_utc(),
            started_at=None,
            finished_at=None,
            result_json=None,
            endpoint="",
        )
        if add:
            session.add(row)
        token = otel_context.attach(sub.trace)
        try:
            row.traceparent = current_traceparent()
            self._state.events.stage(session, row, "queued")
        finally:
            otel_context.detach(token)
        return row
