"""`suanli up`: NATS, then every service in order, then the gateway's /readyz; Ctrl-C stops it all."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Mapping
from typing import Protocol

import httpx

from suanli_cli.launcher.children import ChildOutput, RestartBackoff, Supervisor
from suanli_cli.launcher.nats import nats_child_spec
from suanli_cli.launcher.ports import PortClaim, ensure_ports_free
from suanli_cli.launcher.readiness import wait_until_ready
from suanli_cli.launcher.services import platform_services, service_child_spec, service_env
from suanli_cli.launcher.settings import LauncherSettings


class LauncherOutput(ChildOutput, Protocol):
    def ready(self, text: str) -> None:
        """The one line that says the platform is up and where."""


def port_claims(settings: LauncherSettings) -> list[PortClaim]:
    claims = [
        PortClaim(settings.http_port, "gateway HTTP", "SUANLI_HTTP_PORT"),
        PortClaim(settings.auth_grpc_port, "auth gRPC", "SUANLI_AUTH_GRPC_PORT"),
        PortClaim(settings.catalog_grpc_port, "catalog gRPC", "SUANLI_CATALOG_GRPC_PORT"),
        PortClaim(settings.scheduler_grpc_port, "scheduler gRPC", "SUANLI_SCHEDULER_GRPC_PORT"),
        PortClaim(settings.rag_grpc_port, "rag gRPC", "SUANLI_RAG_GRPC_PORT"),
        PortClaim(settings.auth_metrics_port, "auth metrics", "SUANLI_AUTH_METRICS_PORT"),
        PortClaim(settings.catalog_metrics_port, "catalog metrics", "SUANLI_CATALOG_METRICS_PORT"),
        PortClaim(settings.scheduler_metrics_port, "scheduler metrics", "SUANLI_SCHEDULER_METRICS_PORT"),
        PortClaim(settings.rag_metrics_port, "rag metrics", "SUANLI_RAG_METRICS_PORT"),
        PortClaim(settings.agent_metrics_port, "trainer-agent metrics", "SUANLI_AGENT_METRICS_PORT"),
    ]
    # 0 turns a metrics endpoint off: nothing to claim.
    claims = [claim for claim in claims if claim.port != 0]
    if settings.serving:
        claims.append(PortClaim(settings.serve_port, "Ray Serve HTTP", "SUANLI_SERVE_PORT"))
    if not settings.uses_external_nats:
        claims.insert(0, PortClaim(settings.nats_port, "embedded NATS", "SUANLI_NATS_PORT"))
    return claims


async def run_platform(
    settings: LauncherSettings, output: LauncherOutput, parent_env: Mapping[str, str]
) -> int:
    """Runs until SIGINT or SIGTERM (exit code 0), or until a child cannot start (exit code 1)."""
    ensure_ports_free(port_claims(settings))
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(update={"home": home})

    supervisor = Supervisor(
        output,
        backoff=lambda: RestartBackoff(
            settings.restart_backoff_initial_s,
            settings.restart_backoff_max_s,
            settings.restart_backoff_reset_s,
        ),
        stop_grace_s=settings.stop_grace_s,
        pid_dir=home / "run",
    )
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)

    starting = asyncio.create_task(_start_and_announce(settings, supervisor, output, parent_env))
    stopping = asyncio.create_task(stop_requested.wait())
    exit_code = 0
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and starting.exception() is not None:
            output.note("launcher", f"cannot start the platform: {starting.exception()}")
            exit_code = 1
        else:
            await stopping
            output.note("launcher", "stopping (Ctrl-C again does not hurry it)")
    finally:
        for task in (starting, stopping):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await supervisor.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    output.note("launcher", "stopped")
    return exit_code


async def _start_and_announce(
    settings: LauncherSettings,
    supervisor: Supervisor,
    output: LauncherOutput,
    parent_env: Mapping[str, str],
) -> None:
    env = service_env(settings, parent_env)
    if settings.uses_external_nats:
        output.note("launcher", f"using the external NATS at {settings.effective_nats_url}")
    else:
        await supervisor.start(
            nats_child_spec(settings.home, settings.nats_port, env, settings.ready_timeout_s)
        )
    for service in platform_services(settings):
        await supervisor.start(service_child_spec(service, env, settings.ready_timeout_s))

    base = f"http://127.0.0.1:{settings.http_port}"
    async with httpx.AsyncClient() as client:
        answer = await wait_until_ready(client, f"{base}/readyz", settings.ready_timeout_s)
        if not answer.ready:
            output.note(
                "launcher",
                f"/readyz is not green after {settings.ready_timeout_s:g}s: {answer.failing_checks()}; "
                "still running, waiting for it",
            )
            # Keep the platform up so the operator can look; say so when it does get ready.
            while not answer.ready:
                answer = await wait_until_ready(client, f"{base}/readyz", timeout_s=30.0, interval_s=2.0)
    output.ready(f"Suanli is ready: {base}/ (console), OpenAI API at {base}/v1")
