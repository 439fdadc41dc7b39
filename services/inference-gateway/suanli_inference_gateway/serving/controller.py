"""Level-triggered reconciliation of the scheduler's deployments with Ray Serve's applications.

Each pass compares what should run (deployments deploying, ready or stopping) with what Serve runs
and closes the gap: it starts missing applications, reports ready or failed ones, drains deleted
ones and reports them stopped, and removes applications no deployment wants (left by a controller
that died mid-change). Events only make a pass come sooner, so a lost event costs a few seconds,
never a deployment stuck in the wrong state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from suanli_common.logging import get_logger
from suanli_inference_gateway.clients.deployments import Deployment, DeploymentsApi, DeploymentStatus
from suanli_inference_gateway.serving.apps import APP_PREFIX

log = get_logger(__name__)

# Ray Serve's application statuses (ray.serve.schema.ApplicationStatus values).
RUNNING = "RUNNING"
DEPLOY_FAILED = "DEPLOY_FAILED"
DELETING = "DELETING"

REPLACING = "its replicas stopped; Ray Serve is starting new ones"


@dataclass(frozen=True, slots=True)
class AppState:
    status: str
    message: str = ""
    running_replicas: int = 0


class ServeBackend(Protocol):
    """The Ray Serve calls the controller makes (blocking; run off the event loop)."""

    def applications(self) -> dict[str, AppState]: ...
    def deploy(self, deployment: Deployment) -> None: ...
    def delete(self, name: str) -> None: ...
    def endpoint(self, deployment_id: str) -> str: ...


class ServingController:
    def __init__(self, deployments: DeploymentsApi, serve: ServeBackend) -> None:
        self._deployments = deployments
        self._serve = serve
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile pass failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval_s)
            self._wake.clear()

    async def reconcile(self) -> None:
        wanted = await self._deployments.list("")
        apps = await asyncio.to_thread(self._serve.applications)
        for deployment in wanted:
            await self._converge(deployment, apps.get(deployment.id))
        await self._remove_orphans(wanted, apps)

    async def _converge(self, deployment: Deployment, app: AppState | None) -> None:
        status = deployment.status
        if status in (DeploymentStatus.deploying, DeploymentStatus.ready):
            # An app still being deleted (a redeploy of the same id) is started once it is gone.
            if app is None:
                await self._start(deployment)
            elif app.status == RUNNING:
                await self._report_ready(deployment, app)
            elif status == DeploymentStatus.ready and app.running_replicas == 0:
                # Its last replica died: requests would wait in Serve's queue for the new one.
                await self._report(
                    deployment,
                    DeploymentStatus.deploying,
                    reason=REPLACING,
                    endpoint=deployment.endpoint,
                )
            elif app.status == DEPLOY_FAILED and status == DeploymentStatus.deploying:
                await self._report(deployment, DeploymentStatus.failed, reason=_reason(app.message))
                await asyncio.to_thread(self._serve.delete, deployment.id)
        elif status == DeploymentStatus.stopping:
            if app is None:
                await self._report(deployment, DeploymentStatus.stopped)
            elif app.status != DELETING:
                log.info("draining deployment", deployment_id=deployment.id)
                await asyncio.to_thread(self._serve.delete, deployment.id)
        elif status == DeploymentStatus.failed and app is not None and app.status != DELETING:
            await asyncio.to_thread(self._serve.delete, deployment.id)

    async def _start(self, deployment: Deployment) -> None:
        log.info(
            "starting deployment",
            deployment_id=deployment.id,
            model=deployment.spec.served_model,
            gpu_type=deployment.gpu_type,
        )
        try:
            await asyncio.to_thread(self._serve.deploy, deployment)
        except Exception as exc:  # a config Serve refuses: the user sees why
            log.warning("deployment refused by Ray Serve", deployment_id=deployment.id, error=str(exc))
            await self._report(deployment, DeploymentStatus.failed, reason=_reason(str(exc)))
            return
        await self._report(
            deployment, DeploymentStatus.deploying, endpoint=self._serve.endpoint(deployment.id)
        )

    async def _report_ready(self, deployment: Deployment, app: AppState) -> None:
        replicas = max(app.running_replicas, 1)
        if deployment.status == DeploymentStatus.ready and deployment.ready_replicas == replicas:
            return
        await self._report(
            deployment,
            DeploymentStatus.ready,
            endpoint=self._serve.endpoint(deployment.id),
            replicas=replicas,
        )

    async def _report(
        self,
        deployment: Deployment,
        status: DeploymentStatus,
        *,
        reason: str = "",
        endpoint: str = "",
        replicas: int = 0,
    ) -> None:
        # Said once: the next pass reads the deployment as this report left it.
        await self._deployments.report(
            deployment.id, status, reason=reason, endpoint=endpoint, ready_replicas=replicas
        )
        log.info("deployment reported", deployment_id=deployment.id, status=status.value, reason=reason)

    async def _remove_orphans(self, wanted: Sequence[Deployment], apps: dict[str, AppState]) -> None:
        known = {d.id for d in wanted}
        for name, app in apps.items():
            if name.startswith(APP_PREFIX) and name not in known and app.status != DELETING:
                log.info("removing an application no deployment wants", app=name)
                await asyncio.to_thread(self._serve.delete, name)


def _reason(message: str, limit: int = 2000) -> str:
    """Serve's failure messages carry whole tracebacks; the end says what went wrong."""
    message = message.strip() or "the replicas failed to start"
    return message if len(message) <= limit else "..." + message[-limit:]
