"""Settings of the trainer agent (`SUANLI_*` variables); the defaults are the embedded ones."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from suanli_common.settings import ServiceSettings


class AgentSettings(ServiceSettings):
    service_name: ClassVar[str] = "trainer-agent"

    node_id: str = Field(default_factory=socket.gethostname, description="This node's name in the cluster")
    agent_slots: str = Field(
        "",
        description="Slots to declare when NVML finds no GPU, e.g. 'cpu:2' or 'A100-80G:4' (default: cpu:2)",
    )
    agent_address: str = Field("127.0.0.1", description="Address other nodes reach this one at (MASTER_ADDR)")
    agent_port_range: str = Field("29500-29999", description="Rendezvous ports jobs on this node may use")
    agent_metrics_port: int = Field(
        9465, ge=0, description="Port of the agent's Prometheus /metrics (0: off)"
    )
    agent_metrics_host: str = Field("127.0.0.1", description="Interface the agent's /metrics binds to")
    heartbeat_interval_s: float = Field(1.0, gt=0, description="How often the agent beats")
    stop_grace_s: float = Field(10.0, ge=0, description="SIGTERM to SIGKILL when stopping a job")
    finished_linger_s: float = Field(60.0, ge=0, description="How long beats keep listing a finished attempt")
    volumes_dir: Path | None = Field(
        None, description="Where jobs' volumes live (shared storage across nodes); default: <home>/volumes"
    )
    container_runtime: str | None = Field(
        None, description="docker or podman; default: whichever is on PATH; '' disables image jobs"
    )
    agent_cpus: float = Field(
        0,
        ge=0,
        description="CPU cores instances may reserve on this node (0: the cores this process may use)",
    )
    agent_memory_gb: float = Field(
        0, ge=0, description="Memory instances may reserve on this node, in GB (0: the machine's memory)"
    )
    instance_host: str = Field(
        "127.0.0.1", description="Interface instances' servers bind to (the gateway must reach it)"
    )
    instance_start_timeout_s: float = Field(
        600.0, gt=0, description="How long an instance's server may take to answer before it fails"
    )
    llamafactory_cli: str = Field(
        "",
        description="llamafactory-cli of a virtualenv of its own (default: one beside the agent's Python "
        "or on PATH); without one, llamafactory instances are refused on this node",
    )

    @property
    def work_dir(self) -> Path:
        path = self.home.resolve() / "agent" / self.node_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def resolved_volumes_dir(self) -> Path:
        return (self.volumes_dir or self.home / "volumes").resolve()

    @property
    def port_range(self) -> tuple[int, int]:
        low, _, high = self.agent_port_range.partition("-")
        return int(low), int(high or low)
