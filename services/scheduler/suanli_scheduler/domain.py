"""The scheduler's domain types: job specs, jobs, statuses and the job state machine."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from suanli_common.errors import InvalidRequest


class JobStatus(enum.StrEnum):
    queued = "queued"
    preparing = "preparing"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    timed_out = "timed_out"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled, JobStatus.timed_out})
ACTIVE = frozenset({JobStatus.preparing, JobStatus.running})

# The job state machine. A requeue (lost agent, lease expired) goes back to queued with attempt+1.
_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.queued: frozenset({JobStatus.preparing, JobStatus.running, *TERMINAL}),
    JobStatus.preparing: frozenset({JobStatus.queued, JobStatus.running, *TERMINAL}),
    JobStatus.running: frozenset({JobStatus.queued, *TERMINAL}),
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in _TRANSITIONS.get(current, frozenset())


class JobType(enum.StrEnum):
    pytorch = "pytorch"
    mpi = "mpi"
    fine_tune = "fine_tune"
    deployment = "deployment"


@dataclass(frozen=True, slots=True)
class JobSpec:
    name: str
    job_type: JobType
    command: str = ""
    image: str = ""
    nodes: int = 1
    gpus_per_node: int = 1
    gpu_type: str = ""
    ckpt_path: str = ""
    model_save_path: str = ""
    volume_gb: int = 0
    env: dict[str, str] = field(default_factory=dict)
    max_runtime_minutes: int | None = None  # None: run to completion
    priority: int = 0
    model_path: str = ""
    dataset_path: str = ""

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["job_type"] = self.job_type.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["job_type"] = JobType(values.get("job_type", "pytorch"))
        return cls(**values)


@dataclass(slots=True)
class Job:
    id: str
    owner_id: str
    spec: JobSpec
    status: JobStatus
    status_reason: str
    attempt: int
    lease_id: str
    node_ids: list[str]
    progress: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


_ENV_NAME_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
# Set by the agent for every job; a user's env may not override them.
RESERVED_ENV = frozenset(
    {
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "NNODES",
        "NODE_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "SUANLI_MODEL_PATH",
        "SUANLI_DATASET_PATH",
        "SUANLI_CKPT_PATH",
        "SUANLI_OUTPUT_PATH",
    }
)


def volume_relative_path(value: str, param: str) -> str:
    """A path inside the job's volume: relative (a leading "/" means the volume root), no "..".
    Returns it normalised without a leading slash."""
    path = PurePosixPath(value)
    parts = [p for p in path.parts if p != "/"]
    if any(p == ".." for p in parts) or "\x00" in value:
        raise InvalidRequest(f"{param} must stay inside the job's volume: {value!r}", param=param)
    return str(PurePosixPath(*parts)) if parts else ""


def validate_spec(spec: JobSpec) -> JobSpec:
    """Checks what can be checked without the cluster; normalises paths. Raises InvalidRequest."""
    if spec.job_type not in (JobType.pytorch, JobType.mpi, JobType.fine_tune):
        raise InvalidRequest("job_type must be pytorch or mpi", param="job_type")
    if not spec.command.strip() and not spec.image.strip():
        raise InvalidRequest("a job needs a command or an image", param="command")
    if spec.nodes <= 0:
        raise InvalidRequest("nodes must be at least 1", param="nodes")
    if spec.gpus_per_node <= 0:
        raise InvalidRequest("gpus_per_node must be at least 1", param="gpus_per_node")
    if spec.volume_gb < 0:
        raise InvalidRequest("volume_gb cannot be negative", param="volume_gb")
    if spec.max_runtime_minutes is not None and spec.max_runtime_minutes <= 0:
        raise InvalidRequest(
            "max_runtime_minutes must be at least 1 (leave it out to run to completion)",
            param="max_runtime_minutes",
        )
    if len(spec.name) > 200:
        raise InvalidRequest("name is longer than 200 characters", param="name")
    for key in spec.env:
        if not key or not set(key) <= _ENV_NAME_CHARS or key[0].isdigit():
            raise InvalidRequest(f"not an environment variable name: {key!r}", param="env")
        if key in RESERVED_ENV:
            raise InvalidRequest(f"{key} is set by the platform", param="env")
    return dataclasses.replace(
        spec,
        ckpt_path=volume_relative_path(spec.ckpt_path, "ckpt_path"),
        model_save_path=volume_relative_path(spec.model_save_path, "model_save_path"),
        gpu_type=spec.gpu_type.strip(),
    )
