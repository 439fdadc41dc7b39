"""The scheduler's domain logic, as one service: submit, cancel and query jobs; feed agent
heartbeats and reports to the job state machine; place queued jobs and pending deployments and
expire leases and run times, soon after each change.

The work itself lives in modules named after it: `intake` (submits), `placement_pass`,
`reports` (agents), `expiry`, `transitions` and `deployments`; `state` holds what they share.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from opentelemetry import context as otel_context

from suanli_common.db import Database
from suanli_common.errors import InvalidRequest, NotFound
from suanli_common.logging import get_logger
from suanli_scheduler.batching import GroupCommit
from suanli_scheduler.deployments import DeploymentService
from suanli_scheduler.domain import TERMINAL, Job, JobSpec, JobStatus, validate_spec
from suanli_scheduler.events import DeploymentEvents, JobEvents
from suanli_scheduler.expiry import Expiry
from suanli_scheduler.instances import InstanceService
from suanli_scheduler.intake import Intake, Submission
from suanli_scheduler.leases import Lease, LeaseBook
from suanli_scheduler.ledger import Claim, GpuSlotLedger, NodeInventory, SlotPool
from suanli_scheduler.messages import AttemptReport, AttemptSeen, Heartbeat, NodeCommands, Offer, Stop
from suanli_scheduler.models import JobRow, NodeRow, QuotaRow
from suanli_scheduler.placement_pass import PlacementPass
from suanli_scheduler.reports import AgentReports
from suanli_scheduler.repository import JobRepository, job_from_row
from suanli_scheduler.settings import SchedulerSettings
from suanli_scheduler.state import AfterCommit, MeasuredLock, SchedulerState
from suanli_scheduler.transitions import finish
from suanli_scheduler.waiting import WaitingJob, WaitingQueue

__all__ = ["AttemptReport", "AttemptSeen", "Heartbeat", "JobService", "NodeCommands", "Offer", "Stop"]

log = get_logger(__name__)


class JobService:
    def __init__(
        self,
        db: Database,
        events: JobEvents,
        commands: NodeCommands,
        settings: SchedulerSettings,
        *,
        deployment_events: DeploymentEvents,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = SchedulerState(db, events, commands, settings, clock)
        self._deployments = DeploymentService(self._state, deployment_events)
        self._instances = InstanceService(self._state, settings.resolved_volumes_dir)
        self._intake: GroupCommit[Submission, JobRow] = GroupCommit(Intake(self._state).insert_jobs)
        self._agents = AgentReports(self._state)
        self._placement = PlacementPass(self._state)
        self._expiry = Expiry(self._state)

    @property
    def ledger(self) -> GpuSlotLedger:
        return self._state.ledger

    @property
    def deployments(self) -> DeploymentService:
        """Deployments share the ledger, the lock and the placement pass with jobs."""
        return self._deployments

    @property
    def instances(self) -> InstanceService:
        """Instances run as jobs: they share the job path from submit to the agents' reports."""
        return self._instances

    @property
    def leases(self) -> LeaseBook:
        return self._state.leases

    @property
    def waiting(self) -> WaitingQueue:
        return self._state.waiting

    @property
    def state_lock(self) -> MeasuredLock:
        return self._state.lock

    # ---- start-up ----------------------------------------------------------------------------

    async def restore(self) -> None:
        """Rebuilds the ledger's claims (jobs' and deployments'), the lease book and the waiting
        queue from the database after a restart."""
        state = self._state
        until = state.clock() + state.settings.offer_grace_s
        async with state.db.session() as session:
            repo = JobRepository(session)
            for row in await repo.nodes():
                state.ledger.observe(_inventory_from_row(row), now=-1e9)  # known, not yet alive
            state.ledger.mark_lost(state.clock(), 0.0)
            for row in await repo.holding_leases():
                placements = await repo.placements(row.id, row.attempt)
                spec = JobSpec.from_json(row.spec)
                for p in placements:
                    claim = Claim(
                        row.lease_id,
                        row.owner_id,
                        p.gpu_type,
                        p.slots,
                        p.master_port,
                        spec.cpu_millis,
                        spec.memory_mb,
                    )
                    state.ledger.claim(p.node_id, claim)
                lease = Lease(
                    row.lease_id,
                    row.id,
                    row.attempt,
                    row.owner_id,
                    tuple(p.node_id for p in placements),
                    runtime_limit_s=state.runtime_limit(spec),
                    running_since=row.started_at if row.status == JobStatus.running.value else None,
                )
                state.leases.grant(lease, until)
                lease.phases = {p.node_id: p.phase for p in placements}
            for row in await repo.waiting():
                state.waiting.add(WaitingJob.from_row(row))
        await self._deployments.restore()

    async def close(self) -> None:
        """Ends the batches of submits and reports in progress, before the database closes."""
        await self._intake.close()
        await self._agents.close()

    # ---- the API -----------------------------------------------------------------------------

    async def submit(self, owner_id: str, client_request_id: str, spec: JobSpec) -> Job:
        if not owner_id:
            raise InvalidRequest("owner_id is required", param="owner_id")
        spec = validate_spec(spec)
        row = await self._intake(Submission(owner_id, client_request_id, spec, otel_context.get_current()))
        self._state.wake.set()
        return job_from_row(row)

    async def get(self, caller_id: str, job_id: str) -> Job:
        async with self._state.db.session() as session:
            row = await JobRepository(session).get(job_id)
            if row is None or (caller_id and row.owner_id != caller_id):
                raise NotFound(f"no job {job_id}", param="job_id")
            return job_from_row(row)

    async def list_jobs(self, caller_id: str, job_type: str | None = None) -> list[Job]:
        async with self._state.db.session() as session:
            return [job_from_row(r) for r in await JobRepository(session).list(caller_id or None, job_type)]

    async def cancel(self, caller_id: str, job_id: str) -> Job:
        state = self._state
        out = AfterCommit()
        async with state.lock:
            async with state.db.session() as session:
                repo = JobRepository(session)
                row = await repo.get(job_id, for_update=True)
                if row is None or (caller_id and row.owner_id != caller_id):
                    raise NotFound(f"no job {job_id}", param="job_id")
                if JobStatus(row.status) not in TERMINAL:
                    await finish(state, session, row, JobStatus.cancelled, "cancelled by the user", out)
            job = job_from_row(row)
            state.committed(out)
        await state.send(out)
        state.wake.set()
        return job

    async def set_quota(self, owner_id: str, gpu_type: str, max_gpus: int, version: int = 0) -> None:
        """Sets a quota unless a newer version of it is stored (facts may arrive out of order)."""
        async with self._state.db.session() as session:
            row = await session.get(QuotaRow, (owner_id, gpu_type), with_for_update=True)
            if row is None:
                row = QuotaRow(owner_id=owner_id, gpu_type=gpu_type, max_gpus=max_gpus, version=version)
                session.add(row)
            elif version >= row.version:
                row.max_gpus, row.version = max_gpus, version
            else:
                return
        self._state.quotas_changed()
        self._state.wake.set()

    # ---- agents ------------------------------------------------------------------------------

    async def on_heartbeat(self, beat: Heartbeat) -> None:
        await self._agents.on_heartbeat(beat)

    async def on_reports(self, reports: Sequence[AttemptReport]) -> list[BaseException | None]:
        """Applies a batch of reports; per report, None once it is committed (the caller
        acknowledges only what is stored), or the error."""
        return await self._agents.on_reports(reports)

    async def on_report(self, report: AttemptReport) -> None:
        """Applies one report; returns once it is committed, so the caller acknowledges only
        what is stored."""
        await self._agents.on_report(report)

    # ---- periodic work -----------------------------------------------------------------------

    async def run(self) -> None:
        """Places and expires forever: soon after a change, else every schedule interval.

        Wake-ups coalesce: a change during a pass only marks the next pass due, and a short
        debounce lets a burst of submits and reports land in one pass instead of one each."""
        state = self._state
        while True:
            # asyncio.timeout, not wait_for: see the note in suanli_common.outbox.Outbox.run.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(state.settings.schedule_interval_s):
                    await state.wake.wait()
            if state.wake.is_set() and state.settings.schedule_debounce_s:
                await asyncio.sleep(state.settings.schedule_debounce_s)
            state.wake.clear()
            try:
                await self.expire()
                await self.schedule()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduling pass failed")

    async def expire(self) -> None:
        await self._expiry()

    async def schedule(self) -> int:
        """One placement pass over the pending deployments, then the waiting jobs; returns how
        many jobs were placed."""
        # Deployments first: a user waits on one interactively (a chat endpoint, the seed model),
        # there are few of them, and each is placed once for its whole life, while the job queue
        # turns over; served after jobs, a steady stream of jobs would take every slot freed and
        # a deployment could wait forever. Jobs' no-overtaking rule stays within the job queue.
        await self._deployments.place_pending()
        return await self._placement()

    # ---- views ---------------------------------------------------------------------------------

    def gpus(self) -> list[tuple[str, str, int, int, int, bool]]:
        """(node, gpu type, total, used, memory MB, alive) for every pool of every known node."""
        return [
            (inv.node_id, p.gpu_type, p.total, used.get(p.gpu_type, 0), p.memory_mb, alive)
            for inv, alive, used in self.ledger.inventory()
            for p in inv.pools
        ]


def _inventory_from_row(row: NodeRow) -> NodeInventory:
    pools = tuple(
        SlotPool(p["gpu_type"], int(p["total"]), int(p.get("memory_mb", 0))) for p in (row.inventory or [])
    )
    return NodeInventory(
        row.id,
        row.address,
        pools,
        row.container_runtime,
        cpu_millis=row.cpu_millis or 0,
        memory_mb=row.memory_mb or 0,
        unavailable_kinds=tuple(sorted((row.unavailable_kinds or {}).items())),
    )
