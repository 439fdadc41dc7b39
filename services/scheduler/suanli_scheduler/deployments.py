"""Deployments: a served model that holds GPU slots of the ledger while it lives. Created pending,
placed all-or-nothing (every replica's slots, of one GPU type) into `deploying`; the serving
controller reports it ready, failed or stopped; a delete stops it (at once while it holds nothing,
through `stopping` and the controller's drain otherwise).

Replica i holds a claim `<deployment id>/<i>` of gpu_count slots on node_ids[i], so the claims
count in ListGpus and in the owner's quota like a job's, and are rebuilt from the row at start.
Changes follow the jobs' rule: under the scheduler's lock, claims taken before the commit are
given back if it fails, and claims are released only after the commit that ends them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from suanli_common.errors import InvalidRequest, NotFound
from suanli_common.ids import new_id
from suanli_common.logging import get_logger
from suanli_scheduler.domain import Deployment, DeploymentSpec, DeploymentStatus, validate_deployment_spec
from suanli_scheduler.events import DeploymentEvents
from suanli_scheduler.ledger import Claim, NodeInventory
from suanli_scheduler.models import DeploymentRow
from suanli_scheduler.placement import Placement, PlacementRequest, check_feasible, place
from suanli_scheduler.quotas import QuotaTable
from suanli_scheduler.repository import DeploymentRepository, deployment_from_row
from suanli_scheduler.state import SchedulerState, now_utc

log = get_logger(__name__)

# What the serving controller may report (DEPLOYING: replicas or endpoint changed, no new status).
REPORTABLE = frozenset(
    {DeploymentStatus.deploying, DeploymentStatus.ready, DeploymentStatus.failed, DeploymentStatus.stopped}
)


@dataclass(frozen=True, slots=True)
class DeploymentReport:
    deployment_id: str
    status: DeploymentStatus | None  # None: a status the controller may not report
    reason: str = ""
    endpoint: str = ""
    ready_replicas: int = 0


@dataclass(frozen=True, slots=True)
class _Placed:
    gpu_type: str
    node_ids: list[str]


def replica_claim_id(deployment_id: str, replica: int) -> str:
    return f"{deployment_id}/{replica}"


def replica_claims(row: DeploymentRow) -> list[tuple[str, str]]:
    """(node, claim id) of every replica the deployment was placed with."""
    return [(node_id, replica_claim_id(row.id, i)) for i, node_id in enumerate(row.node_ids or [])]


def check_deployable(
    spec: DeploymentSpec, nodes: Sequence[NodeInventory], quotas: QuotaTable, owner_id: str
) -> None:
    """Refuses what could never be placed: an unknown GPU type, more slots per replica than any
    node has, more slots in all than the owner's quota. With no node known yet (the seed
    deployment at a first start), a deployment of any type waits for the first agent."""
    if spec.gpu_type or nodes:
        try:
            check_feasible(PlacementRequest(1, spec.gpu_count, spec.gpu_type), nodes)
        except InvalidRequest as exc:
            raise InvalidRequest(
                exc.message.replace("gpus_per_node", "gpu_count"),
                param="gpu_count" if exc.param == "gpus_per_node" else exc.param,
            ) from None
    cluster_types = sorted({pool.gpu_type for node in nodes for pool in node.pools})
    if problem := quotas.never_fits(owner_id, spec.gpu_type, spec.total_gpus, cluster_types):
        per_replica = quotas.never_fits(owner_id, spec.gpu_type, spec.gpu_count, cluster_types)
        raise InvalidRequest(
            f"the deployment holds {spec.total_gpus} GPU slot(s) (gpu_count x max_replicas), so {problem}",
            param="gpu_count" if per_replica else "max_replicas",
        )


class DeploymentService:
    def __init__(self, state: SchedulerState, events: DeploymentEvents) -> None:
        self._state = state
        self._events = events
        # Ids of the deployments waiting for slots, so a placement pass reads the table only
        # while one waits; changed after the commit, like the jobs' waiting queue.
        self._pending: set[str] = set()

    async def restore(self) -> None:
        """Re-claims the slots of the deployments that hold them and remembers the pending ones."""
        async with self._state.db.session() as session:
            repo = DeploymentRepository(session)
            for row in await repo.holding_slots():
                spec = DeploymentSpec.from_json(row.spec)
                for node_id, claim_id in replica_claims(row):
                    self._state.ledger.claim(
                        node_id, Claim(claim_id, row.owner_id, row.gpu_type, spec.gpu_count)
                    )
            self._pending = {row.id for row in await repo.pending()}

    # ---- the API -----------------------------------------------------------------------------

    async def create(self, owner_id: str, client_request_id: str, spec: DeploymentSpec) -> Deployment:
        if not owner_id:
            raise InvalidRequest("owner_id is required", param="owner_id")
        spec = validate_deployment_spec(spec)
        state = self._state
        deployment_id = new_id("dep")
        placed: _Placed | None = None
        async with state.lock:
            try:
                async with state.db.session() as session:
                    repo = DeploymentRepository(session)
                    found = await repo.by_request(owner_id, client_request_id) if client_request_id else None
                    if found is not None:
                        return deployment_from_row(found)
                    quotas = await state.quotas(session)
                    check_deployable(spec, state.ledger.inventories(), quotas, owner_id)
                    outcome = self._claim(deployment_id, owner_id, spec, quotas)
                    placed = outcome if isinstance(outcome, _Placed) else None
                    now = now_utc()
                    row = DeploymentRow(
                        id=deployment_id,
                        owner_id=owner_id,
                        client_request_id=client_request_id or None,
                        spec=spec.to_json(),
                        public=spec.public,
                        status=DeploymentStatus.pending.value,
                        status_reason=outcome if isinstance(outcome, str) else "placed at once",
                        gpu_type="",
                        node_ids=[],
                        endpoint="",
                        ready_replicas=0,
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(row)
                    self._events.stage(session, row)  # created pending, placed or not
                    if placed is not None:
                        self._deploy(session, row, placed)
            except IntegrityError:
                # Another scheduler instance stored the same request first.
                self._give_back(deployment_id, placed)
                async with state.db.session() as session:
                    found = await DeploymentRepository(session).by_request(owner_id, client_request_id)
                if found is None:
                    raise
                return deployment_from_row(found)
            except BaseException:
                self._give_back(deployment_id, placed)
                raise
            if placed is None:
                self._pending.add(row.id)
        return deployment_from_row(row)

    async def get(self, caller_id: str, deployment_id: str) -> Deployment:
        """A service (caller "") sees every deployment, stopped ones too; a user sees their own
        and public ones while they are not stopped."""
        async with self._state.db.session() as session:
            row = await DeploymentRepository(session).get(deployment_id)
            if row is None or not _visible(row, caller_id, public_too=True):
                raise NotFound(f"no deployment {deployment_id}", param="deployment_id")
            return deployment_from_row(row)

    async def list_deployments(self, caller_id: str, include_public: bool) -> list[Deployment]:
        async with self._state.db.session() as session:
            rows = await DeploymentRepository(session).list(caller_id or None, include_public)
            return [deployment_from_row(r) for r in rows]

    async def delete(self, caller_id: str, deployment_id: str) -> Deployment:
        """Only its owner (or a service) deletes it; anyone else gets NotFound, so existence is
        not leaked. Stops it at once while it holds no replicas, else asks the controller to."""
        state = self._state
        released: list[str] = []
        async with state.lock:
            async with state.db.session() as session:
                row = await DeploymentRepository(session).get(deployment_id, for_update=True)
                if row is None or not _visible(row, caller_id, public_too=False):
                    raise NotFound(f"no deployment {deployment_id}", param="deployment_id")
                status = DeploymentStatus(row.status)
                if status in (DeploymentStatus.pending, DeploymentStatus.failed):
                    released = self._end(session, row, DeploymentStatus.stopped, "deleted by its owner")
                elif status in (DeploymentStatus.deploying, DeploymentStatus.ready):
                    self._move(session, row, DeploymentStatus.stopping, "deleted by its owner; draining")
            self._committed(row, released)
        return deployment_from_row(row)

    async def report(self, report: DeploymentReport) -> Deployment:
        """What the serving controller made of a deployment. A stopping deployment stays stopping
        whatever it says but STOPPED (or FAILED, which ends it stopped too); a stopped one no
        longer changes."""
        if report.status not in REPORTABLE:
            raise InvalidRequest("status must be READY, DEPLOYING, FAILED or STOPPED", param="status")
        if report.ready_replicas < 0:
            raise InvalidRequest("ready_replicas cannot be negative", param="ready_replicas")
        state = self._state
        released: list[str] = []
        async with state.lock:
            async with state.db.session() as session:
                row = await DeploymentRepository(session).get(report.deployment_id, for_update=True)
                if row is None:
                    raise NotFound(f"no deployment {report.deployment_id}", param="deployment_id")
                released = self._apply(session, row, report)
            self._committed(row, released)
        return deployment_from_row(row)

    # ---- placement ---------------------------------------------------------------------------

    async def place_pending(self) -> int:
        """One pass over the pending deployments, oldest first; returns how many were placed."""
        if not self._pending:
            return 0
        state = self._state
        placed: list[tuple[DeploymentRow, _Placed]] = []
        async with state.lock:
            try:
                async with state.db.session() as session:
                    quotas = await state.quotas(session)
                    rows = await DeploymentRepository(session).pending(for_update=True)
                    for row in rows:
                        spec = DeploymentSpec.from_json(row.spec)
                        outcome = self._claim(row.id, row.owner_id, spec, quotas)
                        if isinstance(outcome, _Placed):
                            placed.append((row, outcome))
                            self._deploy(session, row, outcome)
                        elif row.status_reason != outcome:
                            row.status_reason = outcome
            except BaseException:
                for row, outcome in placed:
                    self._give_back(row.id, outcome)
                raise
            self._pending = {row.id for row in rows} - {row.id for row, _ in placed}
        return len(placed)

    def _claim(
        self, deployment_id: str, owner_id: str, spec: DeploymentSpec, quotas: QuotaTable
    ) -> _Placed | str:
        """Claims gpu_count slots for each of max_replicas replicas, all of one GPU type (replicas
        may share a node), or nothing; returns the placement or why the deployment waits."""
        ledger = self._state.ledger
        capacities, over_quota = quotas.room(ledger, owner_id, spec.gpu_type, spec.total_gpus)
        if over_quota is not None:
            return over_quota
        types = sorted({c.gpu_type for c in capacities})
        if not types:
            return f"waiting for a live node with {spec.gpu_type or 'GPU'} slots"
        best = 0
        for gpu_type in types:
            nodes: list[str] = []
            for i in range(spec.max_replicas):
                decision = place(PlacementRequest(1, spec.gpu_count, gpu_type), ledger.capacities())
                if not isinstance(decision, Placement):
                    break
                node_id = decision.node_ids[0]
                claim = Claim(replica_claim_id(deployment_id, i), owner_id, gpu_type, spec.gpu_count)
                ledger.claim(node_id, claim)
                nodes.append(node_id)
            if len(nodes) == spec.max_replicas:
                return _Placed(gpu_type, nodes)
            for i in range(len(nodes)):
                ledger.release(replica_claim_id(deployment_id, i))
            best = max(best, len(nodes))
        return (
            f"waiting for capacity: needs {spec.max_replicas} replica(s) of {spec.gpu_count} free "
            f"{spec.gpu_type or 'GPU'} slot(s) of one type; {best} fit now"
        )

    # ---- changes within a unit of work -------------------------------------------------------

    def _apply(self, session: AsyncSession, row: DeploymentRow, report: DeploymentReport) -> list[str]:
        """Applies one controller report to the row; returns the claims to release after commit."""
        status = DeploymentStatus(row.status)
        if status is DeploymentStatus.stopped:
            return []
        if report.status is DeploymentStatus.stopped:
            return self._end(session, row, DeploymentStatus.stopped, report.reason or "stopped")
        if report.status is DeploymentStatus.failed:
            if status is DeploymentStatus.stopping:  # it was going away anyway: it is gone
                return self._end(session, row, DeploymentStatus.stopped, report.reason or "stopped")
            if status is DeploymentStatus.failed:
                return []
            return self._end(session, row, DeploymentStatus.failed, report.reason or "the replicas failed")
        if status not in (DeploymentStatus.deploying, DeploymentStatus.ready):
            log.info("deployment report ignored", deployment_id=row.id, status=status, reported=report.status)
            return []
        changed = bool(report.endpoint and report.endpoint != row.endpoint) or (
            report.ready_replicas != row.ready_replicas
        )
        row.endpoint = report.endpoint or row.endpoint
        row.ready_replicas = report.ready_replicas
        if report.status is DeploymentStatus.ready and status is DeploymentStatus.deploying:
            self._move(session, row, DeploymentStatus.ready, report.reason)
        elif report.status is DeploymentStatus.deploying and status is DeploymentStatus.ready:
            # No replica answers until Serve has started another: the gateway stops routing to it.
            self._move(session, row, DeploymentStatus.deploying, report.reason or "replacing its replicas")
        elif changed:
            row.updated_at = now_utc()
            if status is DeploymentStatus.ready:  # the gateway routes by endpoint and replicas
                self._events.stage(session, row)
        return []

    def _deploy(self, session: AsyncSession, row: DeploymentRow, placed: _Placed) -> None:
        row.gpu_type, row.node_ids = placed.gpu_type, list(placed.node_ids)
        reason = f"slots held on {', '.join(sorted(set(placed.node_ids)))}; starting replicas"
        self._move(session, row, DeploymentStatus.deploying, reason)

    def _end(
        self, session: AsyncSession, row: DeploymentRow, status: DeploymentStatus, reason: str
    ) -> list[str]:
        """Moves it to failed or stopped; returns its claims, released once this commits."""
        row.ready_replicas = 0
        self._move(session, row, status, reason)
        return [claim_id for _, claim_id in replica_claims(row)]

    def _move(self, session: AsyncSession, row: DeploymentRow, status: DeploymentStatus, reason: str) -> None:
        row.status, row.status_reason, row.updated_at = status.value, reason, now_utc()
        self._events.stage(session, row)

    # ---- after the unit of work --------------------------------------------------------------

    def _committed(self, row: DeploymentRow, released: list[str]) -> None:
        for claim_id in released:
            self._state.ledger.release(claim_id)
        if row.status != DeploymentStatus.pending.value:
            self._pending.discard(row.id)
        if released:
            self._state.wake.set()  # freed slots: a pass may place what waits for them

    def _give_back(self, deployment_id: str, placed: _Placed | None) -> None:
        """Releases claims taken for a unit of work that did not commit."""
        if placed is not None:
            for i in range(len(placed.node_ids)):
                self._state.ledger.release(replica_claim_id(deployment_id, i))


def _visible(row: DeploymentRow, caller_id: str, *, public_too: bool) -> bool:
    if not caller_id:
        return True
    if row.status == DeploymentStatus.stopped.value:
        return False
    return row.owner_id == caller_id or (public_too and row.public)
