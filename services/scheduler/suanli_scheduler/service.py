"""The scheduler's domain logic: submit, cancel and query jobs; place queued jobs on the ledger;
apply agent heartbeats and reports to the job state machine; expire leases and run times.

One asyncio lock serialises every change, so the in-memory ledger and lease book always agree
with the database. Commands to agents are sent after the change that causes them is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from suanli_common.db import Database
from suanli_common.errors import InvalidRequest, NotFound
from suanli_common.ids import new_id
from suanli_common.logging import get_logger
from suanli_scheduler.domain import ACTIVE, TERMINAL, Job, JobSpec, JobStatus, can_transition, validate_spec
from suanli_scheduler.events import JobEvents
from suanli_scheduler.leases import Lease, LeaseBook
from suanli_scheduler.ledger import Claim, GpuSlotLedger, NodeInventory
from suanli_scheduler.models import JobRow, NodeRow, PlacementRow, QuotaRow
from suanli_scheduler.placement import Placement, PlacementRequest, check_feasible, place
from suanli_scheduler.repository import JobRepository, job_from_row
from suanli_scheduler.settings import SchedulerSettings

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
    """Commands staged during a unit of work, sent once it is committed."""

    offers: list[tuple[str, Offer]] = field(default_factory=list)
    stops: list[tuple[str, Stop]] = field(default_factory=list)


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
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stop_sent: dict[tuple[str, str], float] = {}  # (node, lease) -> when, to rate-limit

    # ---- start-up ----------------------------------------------------------------------------

    async def restore(self) -> None:
        """Rebuilds the ledger's claims and the lease book from the database after a restart."""
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
                    row.lease_id, row.id, row.attempt, row.owner_id, tuple(p.node_id for p in placements)
                )
                self.leases.grant(lease, until)
                lease.phases = {p.node_id: p.phase for p in placements}

    # ---- the API -----------------------------------------------------------------------------

    async def submit(self, owner_id: str, client_request_id: str, spec: JobSpec) -> Job:
        if not owner_id:
            raise InvalidRequest("owner_id is required", param="owner_id")
        spec = validate_spec(spec)
        async with self._lock:
            try:
                row = await self._insert_job(owner_id, client_request_id, spec)
            except IntegrityError:  # another scheduler instance stored the same request first
                async with self._db.session() as session:
                    found = await JobRepository(session).by_request(owner_id, client_request_id)
                if found is None:
                    raise
                row = found
        self._wake.set()
        return job_from_row(row)

    async def _insert_job(self, owner_id: str, client_request_id: str, spec: JobSpec) -> JobRow:
        async with self._db.session() as session:
            repo = JobRepository(session)
            if client_request_id and (existing := await repo.by_request(owner_id, client_request_id)):
                return existing
            check_feasible(_placement_request(spec), [_inventory_from_row(n) for n in await repo.nodes()])
            quota = await repo.quota(owner_id, spec.gpu_type or "*")
            if quota is not None and spec.total_gpus > quota:
                raise InvalidRequest(
                    f"the job needs {spec.total_gpus} GPU slot(s); your quota for "
                    f"{spec.gpu_type or 'any type'} is {quota}",
                    param="gpus_per_node",
                )
            row = JobRow(
                id=new_id("job"),
                owner_id=owner_id,
                client_request_id=client_request_id or None,
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
            self._events.stage(session, row, "queued")
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
            # Persist under the lock before the ledger shows the node, so a submit never sees a
            # node in ListGpus that its feasibility check cannot find.
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
        out = _Outgoing()
        async with self._lock, self._db.session() as session:
            await self._apply_report(session, report, out)
        await self._send(out)

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
                self._events.stage(session, row, "running")
        elif any(p in ACTIVE or p.terminal for p in phases) and current is JobStatus.queued:
            row.status = JobStatus.preparing.value
            row.status_reason = "staging inputs"

    # ---- periodic work -----------------------------------------------------------------------

    async def run(self) -> None:
        """Places and expires forever: at once after a change, else every schedule interval."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.schedule_interval_s)
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
            overdue = await self._overdue()
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
                        self._forget(lease.lease_id)
                for job_id in overdue:
                    row = await repo.get(job_id, for_update=True)
                    if row is not None and row.status == JobStatus.running.value:
                        await self._finish(
                            session, row, JobStatus.timed_out, "exceeded its max run time", out
                        )
        await self._send(out)
        self._wake.set()

    async def _overdue(self) -> list[str]:
        """Running jobs past max run time plus a grace for their agents to stop them themselves."""
        candidates = [lease.job_id for lease in self.leases.all()]
        if not candidates:
            return []
        overdue = []
        async with self._db.session() as session:
            repo = JobRepository(session)
            for job_id in candidates:
                row = await repo.get(job_id)
                if row is None or row.status != JobStatus.running.value or row.started_at is None:
                    continue
                minutes = row.spec.get("max_runtime_minutes")
                if not minutes:
                    continue
                limit = minutes * self._settings.runtime_minute_s + self._settings.runtime_grace_s
                if _now() - row.started_at > timedelta(seconds=limit):
                    overdue.append(job_id)
        return overdue

    async def schedule(self) -> int:
        """One placement pass over the waiting jobs; returns how many were placed."""
        out = _Outgoing()
        placed = 0
        async with self._lock, self._db.session() as session:
            repo = JobRepository(session)
            blocked: set[str] = set()  # GPU types an earlier job waits for: no overtaking it
            for row in await repo.waiting():
                spec = JobSpec.from_json(row.spec)
                kind = spec.gpu_type.lower() or "*"
                quota = await repo.quota(row.owner_id, spec.gpu_type or "*")
                used = self.ledger.used_by(row.owner_id, spec.gpu_type or None)
                if quota is not None and used + spec.total_gpus > quota:
                    reason = f"waiting for quota: {used} of {quota} {spec.gpu_type or 'GPU'} slot(s) in use"
                elif "*" in blocked or kind in blocked or (kind == "*" and blocked):
                    reason = "waiting behind earlier or higher-priority jobs for the same GPUs"
                else:
                    decision = place(_placement_request(spec), self.ledger.capacities())
                    if isinstance(decision, Placement):
                        self._place(session, row, spec, decision, out)
                        placed += 1
                        continue
                    reason = decision.reason
                    blocked.add(kind)
                if row.status_reason != reason:
                    row.status_reason = reason
        await self._send(out)
        return placed

    def _place(
        self, session: AsyncSession, row: JobRow, spec: JobSpec, decision: Placement, out: _Outgoing
    ) -> None:
        lease_id = new_id("lease")
        master = decision.node_ids[0]
        master_inv = self.ledger.known(master)
        port = self.ledger.allocate_port(master)
        for rank, node_id in enumerate(decision.node_ids):
            claim = Claim(
                lease_id, row.owner_id, decision.gpu_type, spec.gpus_per_node, port if rank == 0 else 0
            )
            self.ledger.claim(node_id, claim)
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
                        lease_id=lease_id,
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
        self.leases.grant(
            Lease(lease_id, row.id, row.attempt, row.owner_id, decision.node_ids),
            self._clock() + self._settings.offer_grace_s,
        )
        row.lease_id = lease_id
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
            self._forget(row.lease_id)
        self._events.stage(session, row, status.value)

    async def _requeue(self, session: AsyncSession, row: JobRow, reason: str, out: _Outgoing) -> None:
        for p in await JobRepository(session).placements(row.id, row.attempt):
            out.stops.append((p.node_id, Stop(row.id, row.attempt, JobStatus.queued, reason)))
        self._forget(row.lease_id)
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
        self._events.stage(session, row, "requeued")

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
        for node_id, stop in out.stops:
            try:
                await self._commands.stop(node_id, stop)
            except Exception:
                log.warning("could not send a stop; the lease fences it", node=node_id, exc_info=True)
        for node_id, offer in out.offers:
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
