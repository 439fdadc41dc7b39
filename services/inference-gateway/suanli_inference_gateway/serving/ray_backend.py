"""`ServeBackend` on a real Ray cluster: a local one started here (embedded), or the one
`RAY_ADDRESS` names."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from suanli_common.logging import get_logger
from suanli_inference_gateway.clients.deployments import Deployment
from suanli_inference_gateway.serving.apps import ENGINE_DEPLOYMENT_PREFIXES, build_application, route_prefix
from suanli_inference_gateway.serving.controller import AppState
from suanli_inference_gateway.serving.settings import ServingSettings
from suanli_inference_gateway.serving.tracing import serve_tracing_env

log = get_logger(__name__)


def _preload_openmp() -> None:
    """vLLM's CPU backend wants Intel's OpenMP loaded first; workers inherit the variable from
    the raylet this process starts, so it is set before Ray starts."""
    library = Path(sys.prefix) / "lib" / "libiomp5.so"
    if library.exists() and str(library) not in os.environ.get("LD_PRELOAD", ""):
        os.environ["LD_PRELOAD"] = ":".join(p for p in (str(library), os.environ.get("LD_PRELOAD")) if p)


class RayServeBackend:
    def __init__(self, settings: ServingSettings) -> None:
        self._settings = settings

    def start(self) -> None:
        import ray
        from ray import serve

        cache = self._settings.service_home / "vllm-cache"
        os.environ.setdefault("VLLM_CACHE_ROOT", str(cache))
        for name, value in serve_tracing_env().items():  # before Ray starts: its processes inherit them
            os.environ.setdefault(name, value)
        if self._settings.ray_address:
            ray.init(address=self._settings.ray_address, namespace="suanli", log_to_driver=False)
        else:
            _preload_openmp()
            ray.init(
                # "local": our own cluster even where a `ray start` left one for ray.init to join.
                address="local",
                num_cpus=self._settings.ray_num_cpus,
                namespace="suanli",
                include_dashboard=False,
                log_to_driver=False,
            )
        serve.start(http_options={"host": self._settings.serve_host, "port": self._settings.serve_port})
        log.info("ray serve started", url=self._settings.serve_url, ray_address=self._settings.ray_address)

    def stop(self) -> None:
        import ray
        from ray import serve

        if not ray.is_initialized():
            return
        if not self._settings.ray_address:
            # Our own cluster ends with us: replicas stop their engines first, so no engine
            # process outlives its replica. A joined cluster keeps serving without its controller.
            try:
                serve.shutdown()
            except Exception as exc:
                log.warning("serve did not shut down cleanly", error=str(exc))
        ray.shutdown()

    def applications(self) -> dict[str, AppState]:
        from ray import serve

        return {
            name: AppState(str(app.status.value), app.message, _running_engine_replicas(app.deployments))
            for name, app in serve.status().applications.items()
        }

    def deploy(self, deployment: Deployment) -> None:
        from ray import serve

        app = build_application(deployment, self._settings)
        serve._run(app, _blocking=False, name=deployment.id, route_prefix=route_prefix(deployment.id))

    def delete(self, name: str) -> None:
        from ray import serve

        serve.delete(name, _blocking=False)

    def endpoint(self, deployment_id: str) -> str:
        return self._settings.serve_url + route_prefix(deployment_id)


def _running_engine_replicas(deployments: dict[str, Any]) -> int:
    """Running replicas of the app's vLLM deployment (`LLMServer:<model>`), not of its ingress."""
    return sum(
        count
        for name, overview in deployments.items()
        if name.startswith(ENGINE_DEPLOYMENT_PREFIXES)
        for state, count in overview.replica_states.items()
        if str(getattr(state, "value", state)) == "RUNNING"
    )
