"""The placement pass: walks the waiting queue in serving order, places the jobs that fit on the
ledger, writes those placements in one transaction and sends the offers after its commit.

Decisions are made in memory (ledger, waiting queue, quotas read once), then written: a
placement only where the job's row is still queued and unplaced.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert

from suanli_common.ids import new_id
from suanli_common.logging import get_logger
from suanli_scheduler.domain import JobStatus
from suanli_scheduler.leases import Lease
from suanli_scheduler.ledger import Claim
from suanli_scheduler.messages import Offer
from suanli_scheduler.models import PlacementRow
from suanli_scheduler.placement import Placement, place
from suanli_scheduler.quotas import QuotaTable
from suanli_scheduler.repository import JobRepository, UnplacedJob
from suanli_scheduler.state import AfterCommit, SchedulerState, placement_request
from suanli_scheduler.waiting import WaitingJob

log = get_logger(__name__)


@dataclass(slots=True)
class _Planned:
    """A placement decided in memory (claims and lease taken), not yet written."""

    job: WaitingJob
    decision: Placement
    lease_id: str
    port: int


class PlacementPass:
    def __init__(self, state: SchedulerState) -> None:
        self._state = state

    async def __call__(self) -> int:
        """One placement pass over the waiting jobs; returns how many were placed."""
        state = self._state
        if not len(state.waiting):
            return 0
        out = AfterCommit()
        placed = 0
        async with state.lock:
            async with state.db.session() as session:
                repo = JobRepository(session)
                planned, reasons = self._plan(await state.quotas(session))
                try:
                    rows = await repo.unplaced([p.job.id for p in planned])
                    placement_rows: list[dict[str, object]] = []
                    marks: list[dict[str, object]] = []
                    for plan in planned:
                        row = rows.get(plan.job.id)
                        if row is None or row.attempt != plan.job.attempt:
                            log.warning("waiting job changed under the scheduler", job_id=plan.job.id)
                            out.released.append(plan.lease_id)
                            out.dequeued.append(plan.job.id)
                            continue
                        placement_rows += self._record(row, plan, out)
                        marks.append(
                            {
                                "b_id": row.id,
                                "b_lease": plan.lease_id,
                                "b_nodes": list(plan.decision.node_ids),
                                "b_reason": f"placed on {', '.join(plan.decision.node_ids)}; "
                                "waiting for the agent(s)",
                            }
                        )
                        out.dequeued.append(row.id)
                        placed += 1
                    await repo.mark_placed(marks)
                    if placement_rows:
                        # One multi-row INSERT, not a unit-of-work object per placement: nothing
                        # in this transaction reads them back.
                        await session.execute(insert(PlacementRow.__table__), placement_rows)
                    for reason, jobs in reasons.items():
                        await repo.set_waiting_reason([job.id for job in jobs], reason)
                except BaseException:
                    for plan in planned:  # nothing was written: give the claims back at once
                        state.forget(plan.lease_id)
                    raise
            state.committed(out)
            for reason, jobs in reasons.items():
                for job in jobs:
                    job.status_reason = reason
        await state.send(out)
        return placed

    def _plan(self, quotas: QuotaTable) -> tuple[list[_Planned], dict[str, list[WaitingJob]]]:
        """Walks the queue in order, taking claims for the jobs that fit; returns those
        placements and, per new reason, the jobs that wait for it."""
        ledger = self._state.ledger
        planned: list[_Planned] = []
        reasons: dict[str, list[WaitingJob]] = {}
        blocked: set[str] = set()  # GPU types an earlier job waits for: no overtaking it
        for job in self._state.waiting:
            spec = job.spec
            kind = spec.gpu_type.lower() or "*"
            # A job of no GPU slots (an instance on CPU and memory alone) is under no GPU quota and
            # neither waits behind GPU jobs nor holds them up.
            gpu_less = spec.total_gpus == 0
            capacities, over_quota = (
                (ledger.capacities(), None)
                if gpu_less
                else quotas.room(ledger, job.owner_id, spec.gpu_type, spec.total_gpus)
            )
            if over_quota is not None:
                reason = over_quota
            elif not gpu_less and ("*" in blocked or kind in blocked or (kind == "*" and blocked)):
                reason = "waiting behind earlier or higher-priority jobs for the same GPUs"
            else:
                decision = place(placement_request(spec), capacities)
                if isinstance(decision, Placement):
                    port = ledger.allocate_port(decision.node_ids[0])
                    if port is not None:
                        planned.append(self._claim(job, decision, port))
                        continue
                    reason = f"waiting for a free rendezvous port on {decision.node_ids[0]}"
                else:
                    reason = decision.reason
                if not gpu_less:
                    blocked.add(kind)
            if job.status_reason != reason:
                reasons.setdefault(reason, []).append(job)
        return planned, reasons

    def _claim(self, job: WaitingJob, decision: Placement, port: int) -> _Planned:
        state = self._state
        lease_id = new_id("lease")
        for rank, node_id in enumerate(decision.node_ids):
            claim = Claim(
                lease_id,
                job.owner_id,
                decision.gpu_type,
                job.spec.gpus_per_node,
                port if rank == 0 else 0,
                job.spec.cpu_millis,
                job.spec.memory_mb,
            )
            state.ledger.claim(node_id, claim)
        state.leases.grant(
            Lease(
                lease_id,
                job.id,
                job.attempt,
                job.owner_id,
                decision.node_ids,
                runtime_limit_s=state.runtime_limit(job.spec),
            ),
            state.clock() + state.settings.offer_grace_s,
        )
        return _Planned(job, decision, lease_id, port)

    def _record(self, row: UnplacedJob, plan: _Planned, out: AfterCommit) -> list[dict[str, object]]:
        """Stages the job's offers; returns its placement rows to insert."""
        spec, decision, port = plan.job.spec, plan.decision, plan.port
        master_inv = self._state.ledger.known(decision.node_ids[0])
        placements: list[dict[str, object]] = []
        for rank, node_id in enumerate(decision.node_ids):
            placements.append(
                {
                    "job_id": row.id,
                    "attempt": row.attempt,
                    "node_rank": rank,
                    "node_id": node_id,
                    "gpu_type": decision.gpu_type,
                    "slots": spec.gpus_per_node,
                    "phase": JobStatus.queued.value,
                    "exit_code": None,
                    "message": "",
                    "master_port": port,
                    "result_json": None,
                }
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
                        max_runtime_s=(spec.max_runtime_minutes or 0) * self._state.settings.runtime_minute_s,
                        traceparent=row.traceparent,
                    ),
                )
            )
        return placements
