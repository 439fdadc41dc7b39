"""The platform's services in start order: adding one (catalog, scheduler, trainer-agent, rag) is one line."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

from suanli_cli.launcher.children import ChildSpec
from suanli_cli.launcher.nats import port_probe
from suanli_cli.launcher.settings import LauncherSettings


@dataclass(frozen=True)
class PlatformService:
    name: str
    module: str  # run as `python -m <module>` with this interpreter
    port: int | None = None  # where it serves once ready; the next service starts after that


def platform_services(settings: LauncherSettings) -> list[PlatformService]:
    services = [
        PlatformService("auth", "suanli_auth", settings.auth_grpc_port),
        PlatformService("catalog", "suanli_catalog", settings.catalog_grpc_port),
        PlatformService("scheduler", "suanli_scheduler", settings.scheduler_grpc_port),
        PlatformService("trainer-agent", "suanli_trainer_agent"),
        PlatformService("rag", "suanli_rag", settings.rag_grpc_port),
    ]
    if settings.serving:
        # The Ray driver that runs deployments; the gateway does not wait for it (Ray takes seconds).
        services.append(PlatformService("serving", "suanli_inference_gateway.serving"))
    services.append(PlatformService("gateway", "suanli_inference_gateway", settings.http_port))
    return services


def service_env(settings: LauncherSettings, parent_env: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment (OTEL_*, SUANLI_LOG_*, ...) plus where every part of the platform is."""
    return {
        **parent_env,
        "SUANLI_HOME": str(settings.home.resolve()),
        "SUANLI_NATS_URL": settings.effective_nats_url,
        "SUANLI_HTTP_PORT": str(settings.http_port),
        "SUANLI_AUTH_GRPC_PORT": str(settings.auth_grpc_port),
        "SUANLI_AUTH_ADDRESS": f"127.0.0.1:{settings.auth_grpc_port}",
        "SUANLI_CATALOG_GRPC_PORT": str(settings.catalog_grpc_port),
        "SUANLI_CATALOG_ADDRESS": f"127.0.0.1:{settings.catalog_grpc_port}",
        "SUANLI_SCHEDULER_GRPC_PORT": str(settings.scheduler_grpc_port),
        "SUANLI_SCHEDULER_ADDRESS": f"127.0.0.1:{settings.scheduler_grpc_port}",
        "SUANLI_RAG_GRPC_PORT": str(settings.rag_grpc_port),
        "SUANLI_RAG_ADDRESS": f"127.0.0.1:{settings.rag_grpc_port}",
        "SUANLI_AUTH_METRICS_PORT": str(settings.auth_metrics_port),
        "SUANLI_CATALOG_METRICS_PORT": str(settings.catalog_metrics_port),
        "SUANLI_SCHEDULER_METRICS_PORT": str(settings.scheduler_metrics_port),
        "SUANLI_RAG_METRICS_PORT": str(settings.rag_metrics_port),
        "SUANLI_AGENT_METRICS_PORT": str(settings.agent_metrics_port),
        "SUANLI_SERVE_PORT": str(settings.serve_port),
        # Children write through a pipe: without this their output would come in 8 KiB bursts.
        "PYTHONUNBUFFERED": "1",
    }


def service_child_spec(service: PlatformService, env: Mapping[str, str], timeout_s: float) -> ChildSpec:
    return ChildSpec(
        name=service.name,
        argv=[sys.executable, "-m", service.module],
        env=env,
        ready=port_probe(service.port, timeout_s) if service.port is not None else None,
    )
