"""What the parts of the scheduler share: the database, the in-memory ledger, lease book and
waiting queue, the lock that serialises placements, and the after-commit step that brings the
in-memory state up to a committed unit of work and sends its commands to agents.

One asyncio lock serialises every change to placements, so the ledger, lease book and waiting
queue always agree with the database; they change only after the unit of work that changes the
database commits. Commands to agents are sent after that commit too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from suanli_common.db import Database
from suanli_common.logging import get_logger
from suanli_scheduler.domain import JobSpec
from suanli_scheduler.events import JobEvents
from suanli_scheduler.leases import LeaseBook
from suanli_scheduler.ledger import GpuSlotLedger
from suanli_scheduler.messages import NodeCommands, Offer, Stop
from suanli_scheduler.placement import PlacementRequest
from suanli_scheduler.repository import JobRepository, QuotaTable
from suanli_scheduler.settings import SchedulerSettings
from suanli_scheduler.waiting import WaitingJob, WaitingQueue

log = get_logger(__name__)


def now_utc() -> datetime:
    return datetime.now(UTC)


def placement_request(spec: JobSpec) -> PlacementRequest:
    return PlacementRequest(
        spec.nodes,
        spec.gpus_per_node,
        spec.gpu_type,
        needs_container=bool(spec.image),
        cpu_millis=spec.cpu_millis,
        memory_mb=spec.memory_mb,
        instance_kind=spec.instance.kind if spec.instance else "",
    )


class MeasuredLock(asyncio.Lock):
    """The state lock, counting how long it was waited for and held. Every placement pass,
    report batch and expiry runs under it, database round trips included, so the share of time
    it is held is how saturated the scheduler is: near 100%, work queues behind the lock whatever
    the CPU shows."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__()
        self._clock = clock
        self._taken_at = 0.0
        self.acquisitions = 0
        self.waited_s = 0.0
        self.held_s = 0.0  # by the holders that have released it

    async def acquire(self) -> Literal[True]:
        asked_at = self._clock()
        await super().acquire()
        self._taken_at = self._clock()
        self.waited_s += self._taken_at - asked_at
        self.acquisitions += 1
        return True

    def release(self) -> None:
        held = self._clock() - self._taken_at
        super().release()  # raises if it was not held: then nothing is counted
        self.held_s += held


@dataclass(slots=True)
class AfterCommit:
    """What a unit of work changes outside the database, applied once it is committed: commands
    to agents, leases to release, jobs entering or leaving the waiting queue."""

    offers: list[tuple[str, Offer]] = field(default_factory=list)
    stops: list[tuple[str, Stop]] = field(default_factory=list)
    released: list[str] = field(default_factory=list)  # lease ids
    queued: list[WaitingJob] = field(default_factory=list)
    dequeued: list[str] = field(default_factory=list)  # job ids


class SchedulerState:
    def __init__(
        self,
        db: Database,
        events: JobEvents,
        commands: NodeCommands,
        settings: SchedulerSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.events = events
        self.commands = commands
        self.settings = settings
        self.clock = clock
        self.ledger = GpuSlotLedger()
        self.leases = LeaseBook()
        self.waiting = WaitingQueue()
        self.lock = MeasuredLock()
        self.wake = asyncio.Event()  # set: a placement pass is due
        self._quotas: QuotaTable | None = None
        self._quotas_read_at = 0.0

    async def quotas(self, session: AsyncSession) -> QuotaTable:
        """Every quota, read at most once per schedule interval instead of once per placement
        pass and submit batch; `set_quota` here drops it at once (another instance's change is
        seen within the interval)."""
        now = self.clock()
        if self._quotas is None or now - self._quotas_read_at > self.settings.schedule_interval_s:
            self._quotas = await JobRepository(session).quotas()
            self._quotas_read_at = now
        return self._quotas

    def quotas_changed(self) -> None:
        self._quotas = None

    def runtime_limit(self, spec: JobSpec) -> float | None:
        if not spec.max_runtime_minutes:
            return None
        return spec.max_runtime_minutes * self.settings.runtime_minute_s + self.settings.runtime_grace_s

    def committed(self, out: AfterCommit) -> None:
        """Brings the in-memory state up to a unit of work that has just committed."""
        for lease_id in out.released:
            self.forget(lease_id)
        for job_id in out.dequeued:
            self.waiting.remove(job_id)
        for job in out.queued:
            self.waiting.add(job)

    def forget(self, lease_id: str) -> None:
        self.leases.drop(lease_id)
        self.ledger.release(lease_id)

    async def send(self, out: AfterCommit) -> None:
        # Each batch is published at once and its acks awaited together: a pass that places many
        # jobs pays about one round trip, not one per offer. Stops go first: one may free what an
        # offer of the same pass is about to use.
        for batch in (out.stops, out.offers):
            if not batch:
                continue
            commands: list[tuple[str, Offer | Stop]] = list(batch)
            try:
                outcomes = await self.commands.send(commands)
            except Exception as exc:
                outcomes = [exc] * len(commands)
            for (node_id, command), outcome in zip(commands, outcomes, strict=True):
                if outcome is None:
                    continue
                if isinstance(command, Stop):
                    log.warning(
                        "could not send a stop; the lease fences it", node=node_id, error=str(outcome)
                    )
                else:
                    # The lease expires unrenewed and the job is requeued.
                    log.warning(
                        "could not send an offer", node=node_id, job_id=command.job_id, error=str(outcome)
                    )
