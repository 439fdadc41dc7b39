"""Moves a job through its state machine inside a unit of work: ending it, requeueing it after a
lost or returned attempt, and deriving its status from its nodes' phases (the gang moves as one).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from suanli_scheduler.domain import ACTIVE, TERMINAL, JobStatus, can_transition
from suanli_scheduler.messages import Stop
from suanli_scheduler.models import JobRow, PlacementRow
from suanli_scheduler.repository import JobRepository
from suanli_scheduler.state import AfterCommit, SchedulerState, now_utc
from suanli_scheduler.waiting import WaitingJob


async def finish(
    state: SchedulerState,
    session: AsyncSession,
    row: JobRow,
    status: JobStatus,
    reason: str,
    out: AfterCommit,
    placements: Sequence[PlacementRow] | None = None,
) -> None:
    """Ends the job; `placements`: its current attempt's, when the caller has them already."""
    if not can_transition(JobStatus(row.status), status):
        return
    row.status, row.status_reason, row.finished_at = status.value, reason, now_utc()
    if row.lease_id:
        if placements is None:
            placements = await JobRepository(session).placements(row.id, row.attempt)
        for p in placements:
            if not JobStatus(p.phase).terminal:
                out.stops.append((p.node_id, Stop(row.id, row.attempt, status, reason)))
        out.released.append(row.lease_id)
    out.dequeued.append(row.id)
    state.events.stage(session, row, status.value, placements or ())


async def requeue(
    state: SchedulerState,
    session: AsyncSession,
    row: JobRow,
    reason: str,
    out: AfterCommit,
    placements: Sequence[PlacementRow] | None = None,
) -> None:
    if placements is None:
        placements = await JobRepository(session).placements(row.id, row.attempt)
    for p in placements:
        out.stops.append((p.node_id, Stop(row.id, row.attempt, JobStatus.queued, reason)))
    out.released.append(row.lease_id)
    if row.attempt >= state.settings.max_attempts:
        await finish(
            state,
            session,
            row,
            JobStatus.failed,
            f"{reason}; gave up after {row.attempt} attempts",
            out,
            placements,
        )
        return
    row.status = JobStatus.queued.value
    row.status_reason = f"requeued: {reason}"
    row.attempt += 1
    row.lease_id = ""
    row.node_ids = []
    row.progress = 0.0
    row.started_at = None
    out.queued.append(WaitingJob.from_row(row))
    state.events.stage(session, row, "requeued", placements)


async def aggregate(
    state: SchedulerState, session: AsyncSession, row: JobRow, rows: Sequence[PlacementRow], out: AfterCommit
) -> None:
    """Derives the job's status from its nodes' phases (the gang moves as one)."""
    phases = [JobStatus(p.phase) for p in rows]
    current = JobStatus(row.status)
    if current in TERMINAL:
        return
    bad = next((p for p in rows if JobStatus(p.phase) in (JobStatus.failed, JobStatus.timed_out)), None)
    if bad is not None:
        status = JobStatus(bad.phase)
        what = (
            "exceeded its max run time"
            if status is JobStatus.timed_out
            else f"exited with code {bad.exit_code}"
        )
        reason = f"node {bad.node_id} (rank {bad.node_rank}) {what}"
        if bad.message:
            reason += f": {bad.message}"
        await finish(state, session, row, status, reason, out, rows)
    elif JobStatus.cancelled in phases:
        # The job is not cancelled, so its agent gave the work back (shutting down): run it elsewhere.
        await requeue(state, session, row, "an agent gave the job back", out, rows)
    elif all(p is JobStatus.succeeded for p in phases):
        # The job's result is rank 0's (the process that writes the output, by convention).
        row.result_json = next((p.result_json for p in rows if p.node_rank == 0), None)
        await finish(state, session, row, JobStatus.succeeded, "", out, rows)
    elif all(p in (JobStatus.running, JobStatus.succeeded) for p in phases):
        if current is not JobStatus.running:
            row.status, row.status_reason = JobStatus.running.value, ""
            row.started_at = row.started_at or now_utc()
            if (lease := state.leases.get(row.lease_id)) is not None:
                lease.running_since = row.started_at
            state.events.stage(session, row, "running", rows)
    elif any(p in ACTIVE or p.terminal for p in phases) and current is JobStatus.queued:
        row.status = JobStatus.preparing.value
        row.status_reason = "staging inputs"
