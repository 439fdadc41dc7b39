"""What agents tell the scheduler: heartbeats (the node's inventory, lease renewals, and a
reconciliation of phases a lost report said) and reports of an attempt's phase.

Stale attempts (requeued, or the job ended) are fenced off: their reports change nothing and
the node is told to stop them. Reports are idempotent: a phase only moves forward.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from suanli_common.logging import get_logger
from suanli_common.telemetry import traced_from
from suanli_scheduler.batching import GroupCommit, Outcome
from suanli_scheduler.domain import JobStatus
from suanli_scheduler.messages import AttemptReport, Heartbeat, Stop
from suanli_scheduler.models import JobRow, NodeRow, PlacementRow
from suanli_scheduler.repository import JobRepository
from suanli_scheduler.state import AfterCommit, SchedulerState, now_utc
from suanli_scheduler.transitions import aggregate

log = get_logger(__name__)

# Phases of one node's share of an attempt only move forward.
_PHASE_ORDER = {JobStatus.queued: 0, JobStatus.preparing: 1, JobStatus.running: 2}
# Stops rate-limited per (node, lease); past this many remembered, the expired ones are dropped.
_STOPS_KEPT = 1024


class AgentReports:
    def __init__(self, state: SchedulerState) -> None:
        self._state = state
        self._stop_sent: dict[tuple[str, str], float] = {}  # (node, lease) -> when, to rate-limit
        self._reports: GroupCommit[AttemptReport, None] = GroupCommit(self._apply_reports)

    async def close(self) -> None:
        await self._reports.close()

    async def on_heartbeat(self, beat: Heartbeat) -> None:
        state = self._state
        inv = beat.inventory
        now = state.clock()
        if state.ledger.would_change(inv):
            # Persisted before the ledger shows the node, so a restart knows every node the
            # ledger ever offered to submits.
            async with state.lock, state.db.session() as session:
                await session.merge(
                    NodeRow(
                        id=inv.node_id,
                        address=inv.address,
                        inventory=[dataclasses.asdict(p) | {"reported_used": 0} for p in inv.pools],
                        container_runtime=inv.container_runtime,
                        last_seen=now_utc(),
                        cpu_millis=inv.cpu_millis,
                        memory_mb=inv.memory_mb,
                        unavailable_kinds=dict(inv.unavailable_kinds),
                    )
                )
        if state.ledger.observe(inv, now):
            state.wake.set()
        until = now + state.settings.lease_ttl_s
        for seen in beat.attempts:
            lease = state.leases.get(seen.lease_id)
            if (
                lease is not None
                and lease.job_id == seen.job_id
                and state.leases.renew(seen.lease_id, inv.node_id, until)
            ):
                # Reconciliation: an agent re-reports through its beats what a lost report said.
                if seen.phase.value != lease.phases.get(inv.node_id) and seen.phase is not JobStatus.queued:
                    await self.on_report(
                        AttemptReport(
                            inv.node_id,
                            seen.job_id,
                            seen.attempt,
                            seen.lease_id,
                            seen.phase,
                            seen.exit_code,
                            seen.message,
                            result_json=seen.result_json,
                            endpoint=seen.endpoint,
                        )
                    )
            elif not seen.phase.terminal:
                await self._stop_stale(inv.node_id, seen.job_id, seen.attempt, seen.lease_id, now)

    async def on_reports(self, reports: Sequence[AttemptReport]) -> list[BaseException | None]:
        """Applies a batch of reports (in one transaction, with whatever else is waiting to be
        applied); per report, None once it is committed, or why it was not."""
        outcomes = await asyncio.gather(*(self._reports(r) for r in reports), return_exceptions=True)
        return [o if isinstance(o, BaseException) else None for o in outcomes]

    async def on_report(self, report: AttemptReport) -> None:
        """Applies one report (a phase a heartbeat reconciled); reports applied at about the same
        time share one transaction. Returns once the report is committed."""
        await self._reports(report)

    async def _apply_reports(self, batch: Sequence[AttemptReport]) -> list[Outcome[None]]:
        state = self._state
        out = AfterCommit()
        try:
            async with state.lock:
                async with state.db.session() as session:
                    # Every job and placement the batch touches, read in two statements instead
                    # of two per report.
                    repo = JobRepository(session)
                    jobs = await repo.jobs(list({r.job_id for r in batch}))
                    placements = await repo.placements_of([(row.id, row.attempt) for row in jobs.values()])
                    for report in batch:
                        await self._apply_report(session, report, jobs, placements, out)
                state.committed(out)
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            # One bad report must not hold back the others: apply each on its own.
            log.warning("a batch of reports failed; applying them one by one", exc_info=True)
            return [outcome for report in batch for outcome in await self._apply_reports([report])]
        await state.send(out)
        return [None] * len(batch)

    async def _apply_report(
        self,
        session: AsyncSession,
        report: AttemptReport,
        jobs: dict[str, JobRow],
        loaded: dict[tuple[str, int], list[PlacementRow]],
        out: AfterCommit,
    ) -> None:
        row = jobs.get(report.job_id)
        if row is None:
            return
        if row.attempt != report.attempt or row.lease_id != report.lease_id or not row.lease_id:
            # A stale attempt (requeued, or the job ended): fence it off on that node.
            log.info(
                "stale report ignored", job_id=report.job_id, attempt=report.attempt, node=report.node_id
            )
            if not report.phase.terminal:
                out.stops.append(
                    (report.node_id, Stop(report.job_id, report.attempt, JobStatus.queued, "superseded"))
                )
            return
        placements = loaded.get((row.id, row.attempt))
        if placements is None:  # an attempt begun earlier in this batch (none are placed yet)
            placements = list(await JobRepository(session).placements(row.id, row.attempt))
        mine = [p for p in placements if p.node_id == report.node_id]
        if not mine:
            return
        for p in mine:
            current = JobStatus(p.phase)
            if current.terminal or _PHASE_ORDER.get(report.phase, 3) < _PHASE_ORDER.get(current, 3):
                continue
            p.phase, p.exit_code, p.message = report.phase.value, report.exit_code, report.message
        if report.phase is JobStatus.succeeded and report.result_json:
            keep_result(row, mine, report)
        lease = self._state.leases.get(row.lease_id)
        if lease is not None:
            lease.phases[report.node_id] = report.phase.value
        if report.progress:
            row.progress = report.progress
        if report.endpoint:
            row.endpoint = report.endpoint
        # Inside the trace the agent reported in (the job's), so the facts this stages continue it;
        # a phase a heartbeat reconciled came without one: the job's own trace, then.
        with traced_from(report.traceparent or row.traceparent):
            await aggregate(self._state, session, row, placements, out)

    async def _stop_stale(self, node_id: str, job_id: str, attempt: int, lease_id: str, now: float) -> None:
        state = self._state
        key = (node_id, lease_id)
        window = state.settings.heartbeat_interval_s * 2
        if now - self._stop_sent.get(key, -1e9) < window:
            return
        if len(self._stop_sent) >= _STOPS_KEPT:  # forget stops sent longer ago than the window
            self._stop_sent = {k: t for k, t in self._stop_sent.items() if now - t < window}
        self._stop_sent[key] = now
        log.info(
            "telling an agent to stop work it no longer holds", node=node_id, job_id=job_id, attempt=attempt
        )
        await state.send(
            AfterCommit(
                stops=[(node_id, Stop(job_id, attempt, JobStatus.queued, "this node no longer holds it"))]
            )
        )


MAX_RESULT_BYTES = 64 * 1024  # what the agents read of result.json; more is not stored


def keep_result(row: JobRow, mine: Sequence[PlacementRow], report: AttemptReport) -> None:
    """Keeps rank 0's result on its placement until the gang has succeeded (`aggregate` copies it
    to the job then). Done apart from the phase: a heartbeat may have reconciled the succeeded
    phase (without the result) before this report came, ending the job already; then the result
    goes straight to the job."""
    size = len(report.result_json.encode())
    if size > MAX_RESULT_BYTES:
        log.warning("result.json too large; not stored", job_id=row.id, bytes=size)
        return
    for p in mine:
        if p.node_rank == 0 and p.phase == JobStatus.succeeded.value and p.result_json is None:
            p.result_json = report.result_json
            if row.status == JobStatus.succeeded.value and row.result_json is None:
                row.result_json = report.result_json
