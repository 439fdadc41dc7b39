"""The scheduler's domain logic: submit, cancel and query jobs; place queued jobs on the ledger;
apply agent heartbeats and reports to the job state machine; expire leases and run times.

One asyncio lock serialises every change to placements, so the in-memory ledger, lease book and
waiting queue always agree with the database; they change only after the unit of work that
changes the database commits. Commands to agents are sent after that commit too. Submits and
agent reports that arrive together are applied together, in one transaction (`batching`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from opentelemetry import context as otel_context
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from suanli_common.db import Database
from suanli_common.errors import InvalidRequest, NotFound
from suanli_common.ids import new_id
from suanli_common.logging import get_logger
from suanli_scheduler.batching import GroupCommit, Outcome
from suanli_scheduler.domain import ACTIVE, TERMINAL, Job, JobSpec, JobStatus, can_transition, validate_spec
from suanli_scheduler.events import JobEvents
from suanli_scheduler.leases import Lease, LeaseBook
from suanli_scheduler.ledger import Claim, GpuSlotLedger, NodeInventory
from suanli_scheduler.models import JobRow, NodeRow, PlacementRow, QuotaRow
from suanli_scheduler.placement import Placement, PlacementRequest, check_feasible, place
from suanli_scheduler.repository import JobRepository, QuotaTable, job_from_row
from suanli_scheduler.settings import SchedulerSettings
from suanli_scheduler.waiting import WaitingJob, WaitingQueue

log = get_logger(__name__)

# Phases of one node's share of an attempt only move forward.
_PHASE_ORDER = {JobStatus.queued: 0, JobStatus.preparing: 1, JobStatus.running: 2}


@dataclass(frozen=True, slots=True)
class Offer:
    job_id: str
    attempt: int
    lease_id: str
    owner_id: str
    spec: JobSpec
    node_rank: int
    nnodes: int
    master_addr: str
    master_port: int
    gpu_type: str
    resume: bool
    max_runtime_s: float


@dataclass(frozen=True, slots=True)
class Stop:
    job_id: str
    attempt: int
    reason: JobStatus
    message: str


@dataclass(frozen=True, slots=True)
class AttemptSeen:
    job_id: str
    attempt: int
    lease_id: str
    phase: JobStatus
    exit_code: int = 0
    message: str = ""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    inventory: NodeInventory
    attempts: tuple[AttemptSeen, ...] = ()


@dataclass(frozen=True, slots=True)
class AttemptReport:
    node_id: str
    job_id: str
    attempt: int
    lease_id: str
    phase: JobStatus
    exit_code: int = 0
    message: str = ""
    progress: float = 0.0


class NodeCommands(Protocol):
    """Where offers and stops go (JetStream `work.node.<node>` in production)."""

    async def offer(self, node_id: str, offer: Offer) -> None: ...

    async def stop(self, node_id: str, stop: Stop) -> None: ...


@dataclass(slots=True)
class _Outgoing:
    """What a unit of work changes outside the database, applied once it is committed: commands
    to agents, leases to release, jobs entering or leaving the waiting queue."""

    offers: list[tuple[str, Offer]] = field(default_factory=list)
    stops: list[tuple[str, Stop]] = field(default_factory=list)
    released: list[str] = field(default_factory=list)  # lease ids
    queued: list[WaitingJob] = field(default_factory=list)
    dequeued: list[str] = field(default_factory=list)  # job ids


@dataclass(frozen=True, slots=True)
class _Submission:
    owner_id: str
    client_request_id: str
    spec: JobSpec
    trace: otel_context.Context  # the caller's, so the job.queued event joins its trace


@dataclass(slots=True)
class _Planned:
    """A placement decided in memory (claims and lease taken), not yet written."""

    job: WaitingJob
    decision: Placement
    lease_id: str
    port: int


def _now() -> datetime:
    return datetime.now(UTC)


class JobService:
    def __init__(
        self,
        db: Database,
        events: JobEvents,
        commands: NodeCommands,
        settings: SchedulerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._events = events
        self._commands = commands
        self._settings = settings
        self._clock = clock
        self.ledger = GpuSlotLedger()
        self.leases = LeaseBook()
        self.waiting = WaitingQueue()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stop_sent: dict[tuple[str, str], float] = {}  # (node, lease) -> when, to rate-limit
        self._intake: GroupCommit[_Submission, JobRow] = GroupCommit(self._insert_jobs)
        self._reports: GroupCommit[AttemptReport, None] = GroupCommit(self._apply_reports)

    # ---- start-up ----------------------------------------------------------------------------

    async def restore(self) -> None:
        """Rebuilds the ledger's claims, the lease book and the waiting queue from the database
        after a restart."""
        until = self._clock() + self._settings.offer_grace_s
        async with self._db.session() as session:
            repo = JobRepository(session)
            for row in await repo.nodes():
                self.ledger.observe(_inventory_from_row(row), now=-1e9)  # known, not yet alive
            self.ledger.mark_lost(self._clock(), 0.0)
            for row in await repo.holding_leases():
                placements = await repo.placements(row.id, row.attempt)
                for p in placements:
                    self.ledger.claim(
                        p.node_id, Claim(row.lease_id, row.owner_id, p.gpu_type, p.slots, p.master_port)
                    )
                lease = Lease(
                    row.lease_id,
                    row.id,
                    row.attempt,
                    row.owner_id,
                    tuple(p.node_id for p in placements),
                    runtime_limit_s=self._runtime_limit(JobSpec.from_json(row.spec)),
                    running_since=row.started_at if row.status == JobStatus.running.value else None,
                )
                self.leases.grant(lease, until)
                lease.phases = {p.node_id: p.phase for p in placements}
            for row in await repo.waiting():
                self.waiting.add(WaitingJob.from_row(row))

    async def close(self) -> None:
        """Ends the batches of submits and reports in progress, before the database closes."""
        await self._intake.close()
        await self._reports.close()

    # ---- the API -----------------------------------------------------------------------------

    async def submit(self, owner_id: str, client_request_id: str, spec: JobSpec) -> Job:
        if not owner_id:
            raise InvalidRequest("owner_id is required", param="owner_id")
        spec = validate_spec(spec)
        submission = _Submission(owner_id, client_request_id, spec, otel_context.get_current())
        row = await self._intake(submission)
        self._wake.set()
        return job_from_row(row)

    async def _insert_jobs(self, batch: Sequence[_Submission]) -> list[Outcome[JobRow]]:
        """Stores a batch of submits in one transaction. Needs no lock: it only adds queued jobs,
        and reads the ledger (for feasibility) without awaiting in between."""
        try:
            outcomes, rows = await self._insert_batch(batch)
        except IntegrityError as exc:
            if len(batch) > 1:  # find the one that collided: apply each on its own
                return [item for sub in batch for item in await self._insert_jobs([sub])]
            # Another scheduler instance stored the same request first.
            async with self._db.session() as session:
                found = await JobRepository(session).by_request(batch[0].owner_id, batch[0].client_request_id)
            return [found if found is not None else exc]
        for row in rows:
            self.waiting.add(WaitingJob.from_row(row))
        return outcomes

    async def _insert_batch(self, batch: Sequence[_Submission]) -> tuple[list[Outcome[JobRow]], list[JobRow]]:
        outcomes: list[Outcome[JobRow]] = []
        inserted: list[JobRow] = []
        async with self._db.session() as session:
            repo = JobRepository(session)
            requests = [(s.owner_id, s.client_request_id) for s in batch if s.client_request_id]
            existing = await repo.by_requests(requests) if requests else {}
            quotas = await repo.quotas()
            # The ledger knows every node ever seen (restored from the database at start), so
            # feasibility needs no read of the node table.
            nodes = self.ledger.inventories()
            for sub in batch:
                key = (sub.owner_id, sub.client_request_id)
                if sub.client_request_id and key in existing:
                    outcomes.append(existing[key])
                    continue
                try:
                    row = self._new_job(session, sub, nodes, quotas)
                except InvalidRequest as exc:
                    outcomes.append(exc)
                    continue
                if sub.client_request_id:
                    existing[key] = row  # the same request twice in one batch: one job
                outcomes.append(row)
                inserted.append(row)
        return outcomes, inserted

    def _new_job(
        self, session: AsyncSession, sub: _Submission, nodes: Sequence[NodeInventory], quotas: QuotaTable
    ) -> JobRow:
        spec = sub.spec
        check_feasible(_placement_request(spec), nodes)
        quota = quotas.limit(sub.owner_id, spec.gpu_type or "*")
        if quota is not None and spec.total_gpus > quota:
            raise InvalidRequest(
                f"the job needs {spec.total_gpus} GPU slot(s); your quota for "
                f"{spec.gpu_type or 'any type'} is {quota}",
                param="gpus_per_node",
            )
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
            created_at=_now(),
        )
        session.add(row)
        token = otel_context.attach(sub.trace)
        try:
            self._events.stage(session, row, "queued")
        finally:
            otel_context.detach(token)
        return row

    async def get(self, caller_id: str, job_id: str) -> Job:
        async with self._db.session() as session:
            row = await JobRepository(session).get(job_id)
            if row is None or (caller_id and row.owner_id != caller_id):
                raise NotFound(f"no job {job_id}", param="job_id")
            return job_from_row(row)

    async def list_jobs(self, caller_id: str, job_type: str | None = None) -> list[Job]:
        async with self._db.session() as session:
            return [job_from_row(r) for r in await JobRepository(session).list(caller_id or None, job_type)]

    async def cancel(self, caller_id: str, job_id: str) -> Job:
        out = _Outgoing()
        async with self._lock:
            async with self._db.session() as session:
                repo = JobRepository(session)
                row = await repo.get(job_id, for_update=True)
                if row is None or (caller_id and row.owner_id != caller_id):
                    raise NotFound(f"no job {job_id}", param="job_id")
                if JobStatus(row.status) not in TERMINAL:
                    await self._finish(session, row, JobStatus.cancelled, "cancelled by the user", out)
            job = job_from_row(row)
            self._committed(out)
        await self._send(out)
        self._wake.set()
        return job

    async def set_quota(self, owner_id: str, gpu_type: str, max_gpus: int) -> None:
        async with self._db.session() as session:
            await session.merge(QuotaRow(owner_id=owner_id, gpu_type=gpu_type, max_gpus=max_gpus))
        self._wake.set()

    # ---- agents ------------------------------------------------------------------------------

    async def on_heartbeat(self, beat: Heartbeat) -> None:
        inv = beat.inventory
        now = self._clock()
        if self.ledger.would_change(inv):
            # Persisted before the ledger shows the node, so a restart knows every node the
            # ledger ever offered to submits.
            async with self._lock, self._db.session() as session:
                await session.merge(
                    NodeRow(
                        id=inv.node_id,
                        address=inv.address,
                        inventory=[dataclasses.asdict(p) | {"reported_used": 0} for p in inv.pools],
                        container_runtime=inv.container_runtime,
                        last_seen=_now(),
                    )
                )
        if self.ledger.observe(inv, now):
            self._wake.set()
        until = now + self._settings.lease_ttl_s
        for seen in beat.attempts:
            lease = self.leases.get(seen.lease_id)
            if (
                lease is not None
                and lease.job_id == seen.job_id
                and self.leases.renew(seen.lease_id, inv.node_id, until)
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
                        )
                    )
            elif not seen.phase.terminal:
                await self._stop_stale(inv.node_id, seen.job_id, seen.attempt, seen.lease_id, now)

    async def on_report(self, report: AttemptReport) -> None:
        """Applies one report; reports that arrive together (the subscriber hands a fetched batch
        over concurrently) share one transaction. Returns once the report is committed, so the
        caller acknowledges only what is stored."""
        await self._reports(report)

    async def _apply_reports(self, batch: Sequence[AttemptReport]) -> list[Outcome[None]]:
        out = _Outgoing()
        try:
            async with self._lock:
                async with self._db.session() as session:
                    for report in batch:
                        await self._apply_report(session, report, out)
                self._committed(out)
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            # One bad report must not hold back the others: apply each on its own.
            log.warning("a batch of reports failed; applying them one by one", exc_info=True)
            return [outcome for report in batch for outcome in await self._apply_reports([report])]
        await self._send(out)
        return [None] * len(batch)

    async def _apply_report(self, session: AsyncSession, report: AttemptReport, out: _Outgoing) -> None:
        repo = JobRepository(session)
        row = await repo.get(report.job_id, for_update=True)
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
        placements = await repo.placements(row.id, row.attempt)
        mine = [p for p in placements if p.node_id == report.node_id]
        if not mine:
            return
        for p in mine:
            current = JobStatus(p.phase)
            if current.terminal or _PHASE_ORDER.get(report.phase, 3) < _PHASE_ORDER.get(current, 3):
                continue
            p.phase, p.exit_code, p.message = report.phase.value, report.exit_code, report.message
        lease = self.leases.get(row.lease_id)
        if lease is not None:
            lease.phases[report.node_id] = report.phase.value
        if report.progress:
            row.progress = report.progress
        await self._aggregate(session, row, placements, out)

    async def _aggregate(
        self, session: AsyncSession, row: JobRow, rows: Sequence[PlacementRow], out: _Outgoing
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
            await self._finish(session, row, status, reason, out)
        elif JobStatus.cancelled in phases:
            # The job is not cancelled, so its agent gave the work back (shutting down): run it elsewhere.
            await self._requeue(session, row, "an agent gave the job back", out)
        elif all(p is JobStatus.succeeded for p in phases):
            await self._finish(session, row, JobStatus.succeeded, "", out)
        elif all(p in (JobStatus.running, JobStatus.succeeded) for p in phases):
            if current is not JobStatus.running:
                row.status, row.status_reason = JobStatus.running.value, ""
                row.started_at = row.started_at or _now()
                if (lease := self.leases.get(row.lease_id)) is not None:
                    lease.running_since = row.started_at
                self._events.stage(session, row, "running")
        elif any(p in ACTIVE or p.terminal for p in phases) and current is JobStatus.queued:
            row.status = JobStatus.preparing.value
            row.status_reason = "staging inputs"

    # ---- periodic work -----------------------------------------------------------------------

    async def run(self) -> None:
        """Places and expires forever: soon after a change, else every schedule interval.

        Wake-ups coalesce: a change during a pass only marks the next pass due, and a short
        debounce lets a burst of submits and reports land in one pass instead of one each."""
        while True:
            # asyncio.timeout, not wait_for: see the note in suanli_common.outbox.Outbox.run.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.schedule_interval_s):
                    await self._wake.wait()
            if self._wake.is_set() and self._settings.schedule_debounce_s:
                await asyncio.sleep(self._settings.schedule_debounce_s)
            self._wake.clear()
            try:
                await self.expire()
                await self.schedule()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduling pass failed")

    async def expire(self) -> None:
        now = self._clock()
        for node_id in self.ledger.mark_lost(now, self._settings.lease_ttl_s):
            log.warning("agent lost", node=node_id)
        out = _Outgoing()
        async with self._lock:
            expired = self.leases.expired(now)
            overdue = self._overdue()
            if not expired and not overdue:
                return
            async with self._db.session() as session:
                repo = JobRepository(session)
                for lease in expired:
                    row = await repo.get(lease.job_id, for_update=True)
                    if row is not None and row.lease_id == lease.lease_id and row.status not in TERMINAL:
                        late = [n for n, t in lease.expires.items() if t < now]
                        await self._requeue(session, row, f"lost contact with node(s) {', '.join(late)}", out)
                    else:
                        out.released.append(lease.lease_id)
                for job_id in overdue:
                    row = await repo.get(job_id, for_update=True)
                    if row is not None and row.status == JobStatus.running.value:
                        await self._finish(
                            session, row, JobStatus.timed_out, "exceeded its max run time", out
                        )
            self._committed(out)
        await self._send(out)
        self._wake.set()

    def _overdue(self) -> list[str]:
        """Running jobs past max run time plus a grace for their agents to stop them themselves
        (from the lease book; the caller re-checks each job's row before ending it)."""
        now = _now()
        return [
            lease.job_id
            for lease in self.leases.all()
            if lease.runtime_limit_s is not None
            and lease.running_since is not None
            and (now - lease.running_since).total_seconds() > lease.runtime_limit_s
        ]

    def _runtime_limit(self, spec: JobSpec) -> float | None:
        if not spec.max_runtime_minutes:
            return None
        return spec.max_runtime_minutes * self._settings.runtime_minute_s + self._settings.runtime_grace_s

    async def schedule(self) -> int:
        """One placement pass over the waiting jobs; returns how many were placed.

        Decisions are made in memory (ledger, waiting queue, quotas read once), then written in
        one transaction: a placement only where the job's row is still queued and unplaced."""
        if not len(self.waiting):
            return 0
        out = _Outgoing()
        placed = 0
        async with self._lock:
            async with self._db.session() as session:
                repo = JobRepository(session)
                planned, reasons = self._plan(await repo.quotas())
                try:
                    rows = await repo.unplaced([p.job.id for p in planned])
                    for plan in planned:
                        row = rows.get(plan.job.id)
                        if row is None or row.attempt != plan.job.attempt:
                            log.warning("waiting job changed under the scheduler", job_id=plan.job.id)
                            out.released.append(plan.lease_id)
                            out.dequeued.append(plan.job.id)
                            continue
                        self._record(session, row, plan, out)
                        out.dequeued.append(row.id)
                        placed += 1
                    for reason, jobs in reasons.items():
                        await repo.set_waiting_reason([job.id for job in jobs], reason)
                except BaseException:
                    for plan in planned:  # nothing was written: give the claims back at once
                        self._forget(plan.lease_id)
                    raise
            self._committed(out)
            for reason, jobs in reasons.items():
                for job in jobs:
                    job.status_reason = reason
        await self._send(out)
        return placed

    def _plan(self, quotas: QuotaTable) -> tuple[list[_Planned], dict[str, list[WaitingJob]]]:
        """Walks the queue in order, taking claims for the jobs that fit; returns those
        placements and, per new reason, the jobs that wait for it."""
        planned: list[_Planned] = []
        reasons: dict[str, list[WaitingJob]] = {}
        blocked: set[str] = set()  # GPU types an earlier job waits for: no overtaking it
        for job in self.waiting:
            spec = job.spec
            kind = spec.gpu_type.lower() or "*"
            quota = quotas.limit(job.owner_id, spec.gpu_type or "*")
            used = self.ledger.used_by(job.owner_id, spec.gpu_type or None)
            if quota is not None and used + spec.total_gpus > quota:
                reason = f"waiting for quota: {used} of {quota} {spec.gpu_type or 'GPU'} slot(s) in use"
            elif "*" in blocked or kind in blocked or (kind == "*" and blocked):
                reason = "waiting behind earlier or higher-priority jobs for the same GPUs"
            else:
                decision = place(_placement_request(spec), self.ledger.capacities())
                if isinstance(decision, Placement):
                    port = self.ledger.allocate_port(decision.node_ids[0])
                    if port is not None:
                        planned.append(self._claim(job, decision, port))
                        continue
                    reason = f"waiting for a free rendezvous port on {decision.node_ids[0]}"
                else:
                    reason = decision.reason
                blocked.add(kind)
            if job.status_reason != reason:
                reasons.setdefault(reason, []).append(job)
        return planned, reasons

    def _claim(self, job: WaitingJob, decision: Placement, port: int) -> _Planned:
        lease_id = new_id("lease")
        for rank, node_id in enumerate(decision.node_ids):
            claim = Claim(
                lease_id, job.owner_id, decision.gpu_type, job.spec.gpus_per_node, port if rank == 0 else 0
            )
            self.ledger.claim(node_id, claim)
        self.leases.grant(
            Lease(
                lease_id,
                job.id,
                job.attempt,
                job.owner_id,
                decision.node_ids,
                runtime_limit_s=self._runtime_limit(job.spec),
            ),
            self._clock() + self._settings.offer_grace_s,
        )
        return _Planned(job, decision, lease_id, port)

    def _record(self, session: AsyncSession, row: JobRow, plan: _Planned, out: _Outgoing) -> None:
        spec, decision, port = plan.job.spec, plan.decision, plan.port
        master_inv = self.ledger.known(decision.node_ids[0])
        for rank, node_id in enumerate(decision.node_ids):
            session.add(
                PlacementRow(
                    job_id=row.id,
                    attempt=row.attempt,
                    node_rank=rank,
                    node_id=node_id,
                    gpu_type=decision.gpu_type,
                    slots=spec.gpus_per_node,
                    phase=JobStatus.queued.value,
                    exit_code=None,
                    message="",
                    master_port=port,
                )
            )
            out.offers.append(
                (
                    node_id,
                    Offer(
                        job_id=row.id,
                        attempt=row.attempt,
                        lease_id=plan.lease_id,
                        owner_id=row.owner_id,
                        spec=spec,
                        node_rank=rank,
                        nnodes=len(decision.node_ids),
                        master_addr=master_inv.address if master_inv else "127.0.0.1",
                        master_port=port,
                        gpu_type=decision.gpu_type,
                        resume=row.attempt > 1 and bool(spec.ckpt_path),
                        max_runtime_s=(spec.max_runtime_minutes or 0) * self._settings.runtime_minute_s,
                    ),
                )
            )
        row.lease_id = plan.lease_id
        row.node_ids = list(decision.node_ids)
        row.status_reason = f"placed on {', '.join(decision.node_ids)}; waiting for the agent(s)"

    # ---- transitions -------------------------------------------------------------------------

    async def _finish(
        self, session: AsyncSession, row: JobRow, status: JobStatus, reason: str, out: _Outgoing
    ) -> None:
        if not can_transition(JobStatus(row.status), status):
            return
        row.status, row.status_reason, row.finished_at = status.value, reason, _now()
        if row.lease_id:
            for p in await JobRepository(session).placements(row.id, row.attempt):
                if not JobStatus(p.phase).terminal:
                    out.stops.append((p.node_id, Stop(row.id, row.attempt, status, reason)))
            out.released.append(row.lease_id)
        out.dequeued.append(row.id)
        self._events.stage(session, row, status.value)

    async def _requeue(self, session: AsyncSession, row: JobRow, reason: str, out: _Outgoing) -> None:
        for p in await JobRepository(session).placements(row.id, row.attempt):
            out.stops.append((p.node_id, Stop(row.id, row.attempt, JobStatus.queued, reason)))
        out.released.append(row.lease_id)
        if row.attempt >= self._settings.max_attempts:
            await self._finish(
                session, row, JobStatus.failed, f"{reason}; gave up after {row.attempt} attempts", out
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
        self._events.stage(session, row, "requeued")

    def _committed(self, out: _Outgoing) -> None:
        """Brings the in-memory state up to a unit of work that has just committed."""
        for lease_id in out.released:
            self._forget(lease_id)
        for job_id in out.dequeued:
            self.waiting.remove(job_id)
        for job in out.queued:
            self.waiting.add(job)

    def _forget(self, lease_id: str) -> None:
        self.leases.drop(lease_id)
        self.ledger.release(lease_id)

    async def _stop_stale(self, node_id: str, job_id: str, attempt: int, lease_id: str, now: float) -> None:
        key = (node_id, lease_id)
        if now - self._stop_sent.get(key, -1e9) < self._settings.heartbeat_interval_s * 2:
            return
        self._stop_sent[key] = now
        log.info(
            "telling an agent to stop work it no longer holds", node=node_id, job_id=job_id, attempt=attempt
        )
        await self._commands.stop(
            node_id, Stop(job_id, attempt, JobStatus.queued, "this node no longer holds it")
        )

    async def _send(self, out: _Outgoing) -> None:
        # Each command waits for JetStream's ack; sent concurrently, a pass that places many
        # jobs pays about one round trip instead of one per offer. Stops go first: one may free
        # what an offer of the same pass is about to use.
        await asyncio.gather(*(self._send_stop(node_id, stop) for node_id, stop in out.stops))
        await asyncio.gather(*(self._send_offer(node_id, offer) for node_id, offer in out.offers))

    async def _send_stop(self, node_id: str, stop: Stop) -> None:
        try:
            await self._commands.stop(node_id, stop)
        except Exception:
            log.warning("could not send a stop; the lease fences it", node=node_id, exc_info=True)

    async def _send_offer(self, node_id: str, offer: Offer) -> None:
        try:
            await self._commands.offer(node_id, offer)
        except Exception:
            # The lease expires unrenewed and the job is requeued.
            log.warning("could not send an offer", node=node_id, job_id=offer.job_id, exc_info=True)

    # ---- views ---------------------------------------------------------------------------------

    def gpus(self) -> list[tuple[str, str, int, int, int, bool]]:
        """(node, gpu type, total, used, memory MB, alive) for every pool of every known node."""
        return [
            (inv.node_id, p.gpu_type, p.total, used.get(p.gpu_type, 0), p.memory_mb, alive)
            for inv, alive, used in self.ledger.inventory()
            for p in inv.pools
        ]


def _placement_request(spec: JobSpec) -> PlacementRequest:
    return PlacementRequest(spec.nodes, spec.gpus_per_node, spec.gpu_type, needs_container=bool(spec.image))


def _inventory_from_row(row: NodeRow) -> NodeInventory:
    from suanli_scheduler.ledger import SlotPool

    pools = tuple(
        SlotPool(p["gpu_type"], int(p["total"]), int(p.get("memory_mb", 0))) for p in (row.inventory or [])
    )
    return NodeInventory(row.id, row.address, pools, row.container_runtime)
