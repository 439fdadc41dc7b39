"""Settings of the scheduler (`SUANLI_*` variables); the defaults are the embedded ones."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from suanli_common.settings import ServiceSettings


class SchedulerSettings(ServiceSettings):
    service_name: ClassVar[str] = "scheduler"

    scheduler_grpc_port: int = Field(50053, description="Port of the SchedulerService gRPC API")
    scheduler_grpc_host: str = Field("127.0.0.1", description="Interface the gRPC API binds to")
    scheduler_metrics_port: int = Field(
        9463, ge=0, description="Port of Prometheus /metrics, on the gRPC API's interface (0: off)"
    )
    heartbeat_interval_s: float = Field(1.0, gt=0, description="How often agents are expected to beat")
    missed_heartbeats: int = Field(5, gt=0, description="Beats missed before an agent counts as lost")
    offer_grace_s: float = Field(
        20.0, gt=0, description="How long a new placement's lease lasts before the agent first lists it"
    )
    max_attempts: int = Field(5, gt=0, description="Placements of one job before it fails for good")
    schedule_interval_s: float = Field(0.5, gt=0, description="Placement pass period (also run on change)")
    schedule_debounce_s: float = Field(
        0.005, ge=0, description="After a change, how long to gather more before a placement pass"
    )
    runtime_grace_s: float = Field(
        15.0, ge=0, description="Past a job's max run time, how long to wait for its agent before ending it"
    )
    runtime_minute_s: float = Field(
        60.0, gt=0, description="Seconds in one minute of max_runtime_minutes (tests shorten it)"
    )
    volumes_dir: Path | None = Field(
        None, description="Where jobs' volumes live (shared with the agents); default: <home>/volumes"
    )

    @property
    def resolved_volumes_dir(self) -> Path:
        return (self.volumes_dir or self.home / "volumes").resolve()

    @property
    def lease_ttl_s(self) -> float:
        return self.heartbeat_interval_s * self.missed_heartbeats
