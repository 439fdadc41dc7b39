"""The routing table: which deployment answers a `model`, kept from the scheduler's deployment.*
events and a periodic full read (a gateway that missed events, or just started, catches up).

Lookups happen on every request and never leave the process. A request waiting on a deployment
that lost its replicas (back to deploying, or failed) is ended with a 503 rather than left in
Serve's queue until a new replica has started, minutes later on a CPU. A deployment being deleted
(stopping) drains: its requests in flight finish.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

from suanli_common.errors import FailedPrecondition, NotFound, Unavailable
from suanli_common.logging import get_logger
from suanli_inference_gateway.clients.deployments import Deployment, DeploymentsApi, DeploymentStatus

log = get_logger(__name__)

# What a ready deployment becomes when its replicas are gone.
LOST = frozenset({DeploymentStatus.deploying, DeploymentStatus.failed})


class RoutingTable:
    def __init__(self) -> None:
        self._by_id: dict[str, Deployment] = {}
        self._by_model: dict[str, list[Deployment]] = {}
        # The requests in flight per deployment, each as the timeout that ends it.
        self._in_flight: dict[str, set[asyncio.Timeout]] = {}

    def apply(self, deployment: Deployment) -> None:
        """One deployment's new state; an older state than the one held is ignored (events of
        one deployment may overtake each other, and a full read may be older than an event)."""
        held = self._by_id.get(deployment.id)
        if held is not None and _stamp(held) > _stamp(deployment):
            return
        if deployment.status == DeploymentStatus.stopped:
            self._by_id.pop(deployment.id, None)
        else:
            self._by_id[deployment.id] = deployment
        self._reindex()

    def replace(self, deployments: Iterable[Deployment]) -> None:
        fresh = {d.id: d for d in deployments}
        for deployment_id, held in self._by_id.items():
            # Changed since the read started: the event we already applied is newer.
            if deployment_id in fresh and _stamp(held) > _stamp(fresh[deployment_id]):
                fresh[deployment_id] = held
        self._by_id = fresh
        self._reindex()

    def _reindex(self) -> None:
        by_model: dict[str, list[Deployment]] = {}
        for deployment in self._by_id.values():
            by_model.setdefault(deployment.spec.served_model, []).append(deployment)
        self._by_model = by_model
        for deployment_id, requests in self._in_flight.items():
            held = self._by_id.get(deployment_id)
            if held is not None and held.status in LOST:
                for request in requests:
                    if not request.expired():
                        request.reschedule(-1.0)  # due already: it ends at the loop's next turn

    @contextlib.asynccontextmanager
    async def while_ready(self, deployment_id: str) -> AsyncIterator[None]:
        """Runs the block (a request to the deployment), ending it with Unavailable (503) if the
        deployment loses its replicas first."""
        request = asyncio.timeout(None)
        try:
            async with request:
                self._in_flight.setdefault(deployment_id, set()).add(request)
                yield
        except TimeoutError as exc:
            if not request.expired():
                raise
            held = self._by_id.get(deployment_id)
            reason = f" ({held.status.value}: {held.status_reason})" if held and held.status_reason else ""
            raise Unavailable(
                f"The deployment {deployment_id} lost its replicas while this request waited{reason}. "
                "Please retry once it is ready again.",
                retry_after=5,
            ) from exc
        finally:
            requests = self._in_flight.get(deployment_id, set())
            requests.discard(request)
            if not requests:
                self._in_flight.pop(deployment_id, None)

    def resolve(self, caller_id: str, model: str) -> Deployment:
        """The deployment to send the caller's request for `model` to: the caller's own before a
        public one, a ready one before one that is not. Not found (404) when the caller can use
        no deployment of that name; 409 with the status when it exists but is not ready."""
        usable = [d for d in self._by_model.get(model, ()) if d.owner_id == caller_id or d.spec.public]
        if not usable:
            raise NotFound(
                f"The model `{model}` does not exist or is not deployed for you. "
                "GET /v1/models lists the deployed models you can use.",
                param="model",
                code="model_not_found",
            )
        usable.sort(key=lambda d: (d.status != DeploymentStatus.ready, d.owner_id != caller_id))
        best = usable[0]
        if best.status != DeploymentStatus.ready or not best.endpoint:
            reason = f": {best.status_reason}" if best.status_reason else ""
            raise FailedPrecondition(
                f"The model `{model}` is not ready to answer: its deployment {best.id} is "
                f"{best.status.value}{reason}.",
                param="model",
                code="model_not_ready",
            )
        return best

    def usable_by(self, caller_id: str) -> list[Deployment]:
        """The ready deployments the caller may send requests to, one per model name."""
        seen: dict[str, Deployment] = {}
        for deployment in self._by_id.values():
            if deployment.status != DeploymentStatus.ready:
                continue
            if deployment.owner_id != caller_id and not deployment.spec.public:
                continue
            name = deployment.spec.served_model
            if name not in seen or deployment.owner_id == caller_id:
                seen[name] = deployment
        return sorted(seen.values(), key=lambda d: d.spec.served_model)


def _stamp(deployment: Deployment) -> float:
    return deployment.updated_at.timestamp() if deployment.updated_at else 0.0


async def keep_in_sync(table: RoutingTable, deployments: DeploymentsApi, interval_s: float) -> None:
    """Reads every deployment now and then; events keep the table current in between."""
    while True:
        try:
            table.replace(await deployments.list(""))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("cannot read deployments; keeping the routing table", error=str(exc))
        await asyncio.sleep(interval_s)
