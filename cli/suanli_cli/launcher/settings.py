"""What `suanli up` reads from `SUANLI_*` variables: the ports it hands to services, timeouts, backoff."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from suanli_common.settings import EMBEDDED_NATS_PORT, ServiceSettings


class LauncherSettings(ServiceSettings):
    service_name: ClassVar[str] = "launcher"

    http_port: int = Field(8080, description="Port of the inference-gateway (the only public HTTP port)")
    nats_port: int = Field(EMBEDDED_NATS_PORT, description="Port of the embedded nats-server")
    auth_grpc_port: int = Field(50051, description="Port of the auth gRPC API")
    catalog_grpc_port: int = Field(50052, description="Port of the catalog gRPC API")
    scheduler_grpc_port: int = Field(50053, description="Port of the scheduler gRPC API")
    rag_grpc_port: int = Field(50054, description="Port of the rag gRPC API")
    auth_metrics_port: int = Field(9461, description="Port of auth's Prometheus /metrics (0: off)")
    catalog_metrics_port: int = Field(9462, description="Port of the catalog's Prometheus /metrics (0: off)")
    scheduler_metrics_port: int = Field(
        9463, description="Port of the scheduler's Prometheus /metrics (0: off)"
    )
    rag_metrics_port: int = Field(9464, description="Port of rag's Prometheus /metrics (0: off)")
    agent_metrics_port: int = Field(
        9465, description="Port of this node's trainer agent's Prometheus /metrics (0: off)"
    )
    serve_port: int = Field(8000, description="Port of Ray Serve's HTTP proxy (the gateway's upstream)")
    serving: bool = Field(
        True,
        description="Start the serving controller and a local Ray cluster for deployments (SUANLI_SERVING)",
    )
    ready_timeout_s: float = Field(120.0, description="How long to wait for /readyz before warning")
    restart_backoff_initial_s: float = Field(0.5, description="First delay before restarting a child")
    restart_backoff_max_s: float = Field(10.0, description="Longest delay between restarts of a child")
    restart_backoff_reset_s: float = Field(
        30.0, description="A child that stayed up this long restarts after the initial delay again"
    )
    stop_grace_s: float = Field(10.0, description="How long a child may take to exit after SIGTERM")

    @property
    def uses_external_nats(self) -> bool:
        """True when SUANLI_NATS_URL was given: then the launcher starts no nats-server."""
        return "nats_url" in self.model_fields_set

    @property
    def effective_nats_url(self) -> str:
        if self.uses_external_nats:
            return self.nats_url
        return f"nats://127.0.0.1:{self.nats_port}"
