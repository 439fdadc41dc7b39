"""Expiry: agents that fell silent lose their nodes' placements (the job is requeued on other
nodes), and running jobs past their max run time plus a grace are ended as timed_out."""

from __future__ import annotations

from suanli_common.logging import get_logger
from suanli_scheduler.domain import TERMINAL, JobStatus
from suanli_scheduler.repository import JobRepository
from suanli_scheduler.state import AfterCommit, SchedulerState, now_utc
from suanli_scheduler.transitions import finish, requeue

log = get_logger(__name__)


class Expiry:
    def __init__(self, state: SchedulerState) -> None:
        self._state = state

    async def __call__(self) -> None:
        state = self._state
        now = state.clock()
        for node_id in state.ledger.mark_lost(now, state.settings.lease_ttl_s):
            log.warning("agent lost", node=node_id)
        out = AfterCommit()
        async with state.lock:
            expired = state.leases.expired(now)
            overdue = self._overdue()
            if not expired and not overdue:
                return
            async with state.db.session() as session:
                repo = JobRepository(session)
                for lease in expired:
                    row = await repo.get(lease.job_id, for_update=True)
                    if row is not None and row.lease_id == lease.lease_id and row.status not in TERMINAL:
                        late = [n for n, t in lease.expires.items() if t < now]
                        await requeue(
                            state, session, row, f"lost contact with node(s) {', '.join(late)}", out
                        )
                    else:
                        out.released.append(lease.lease_id)
                for job_id in overdue:
                    row = await repo.get(job_id, for_update=True)
                    if row is not None and row.status == JobStatus.running.value:
                        await finish(
                            state, session, row, JobStatus.timed_out, "exceeded its max run time", out
                        )
            state.committed(out)
        await state.send(out)
        state.wake.set()

    def _overdue(self) -> list[str]:
        """Running jobs past max run time plus a grace for their agents to stop them themselves
        (from the lease book; the caller re-checks each job's row before ending it)."""
        now = now_utc()
        return [
            lease.job_id
            for lease in self._state.leases.all()
            if lease.runtime_limit_s is not None
            and lease.running_since is not None
            and (now - lease.running_since).total_seconds() > lease.runtime_limit_s
        ]
