"""The scheduler's domain types: job specs, jobs, statuses and the job state machine; deployment
specs, deployments and their statuses; what an instance's run launches."""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from suanli_common.errors import InvalidRequest
from suanli_common.ids import fine_tuned_model_id


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
    evaluation = "evaluation"
    instance = "instance"  # an instance's run, submitted by the instance service only


# Job types a user (or the gateway on a user's behalf) may submit; deployments are not jobs here.
SUBMITTABLE = frozenset({JobType.pytorch, JobType.mpi, JobType.fine_tune, JobType.evaluation})


@dataclass(frozen=True, slots=True)
class FineTuneSpec:
    """What a fine-tune trains from (a catalog model id) and the suffix of its output's name."""

    base_model: str
    suffix: str = ""


@dataclass(frozen=True, slots=True)
class InstanceMount:
    """One input of an instance: a catalog model, dataset or adapter the agent copies in read-only,
    or a job's or another instance's folder that TensorBoard reads in place."""

    kind: str  # model | dataset | adapter | job | instance
    id: str
    name: str
    source: str = ""


@dataclass(frozen=True, slots=True)
class InstanceLaunch:
    """What the agent starts for an instance's run (see `instance_specs` for the instance itself)."""

    instance_id: str
    kind: str
    token: str
    base_url: str
    mounts: tuple[InstanceMount, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstanceLaunch:
        mounts = tuple(InstanceMount(**m) for m in data.get("mounts") or ())
        return cls(
            str(data["instance_id"]), str(data["kind"]), str(data["token"]), str(data["base_url"]), mounts
        )


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
    fine_tune: FineTuneSpec | None = None  # set for fine_tune jobs only
    labels: dict[str, str] = field(default_factory=dict)  # the submitter's facts, read back as given
    cpu_millis: int = 0  # CPU reserved on each node besides the GPU slots (instances)
    memory_mb: int = 0
    instance: InstanceLaunch | None = None  # set for instance jobs only

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    def output_model_id(self, job_id: str) -> str:
        """The id the catalog registers a fine-tune's merged model under; "" for other jobs."""
        if self.fine_tune is None:
            return ""
        return fine_tuned_model_id(self.fine_tune.base_model, self.fine_tune.suffix, job_id)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # fine_tune becomes a dict (or None) too
        data["job_type"] = self.job_type.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        # Rows stored before a field existed lack its key and get the field's default.
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["job_type"] = JobType(values.get("job_type", "pytorch"))
        fine_tune = values.get("fine_tune")
        values["fine_tune"] = (
            FineTuneSpec(str(fine_tune.get("base_model", "")), str(fine_tune.get("suffix", "")))
            if isinstance(fine_tune, dict)
            else None
        )
        values["labels"] = dict(values.get("labels") or {})
        instance = values.get("instance")
        values["instance"] = InstanceLaunch.from_json(instance) if isinstance(instance, dict) else None
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
    result_json: str = ""  # what the succeeded job left in <output>/result.json, as it wrote it
    endpoint: str = ""  # an instance's run: host:port its server answers on, as the agent reported

    @property
    def output_model_id(self) -> str:
        return self.spec.output_model_id(self.id)


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


# The base model is a catalog model id (the catalog's own pattern); the suffix becomes one
# colon-separated part of the output's id, so it may hold no colon.
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_SUFFIX = re.compile(r"^[A-Za-z0-9._-]{0,64}$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_LABELS = 32
MAX_LABEL_VALUE_BYTES = 16 * 1024


def validate_fine_tune(spec: JobSpec) -> FineTuneSpec | None:
    """A fine-tune names its base model; no other job carries a fine-tune spec."""
    fine_tune = spec.fine_tune
    if spec.job_type is not JobType.fine_tune:
        if fine_tune is not None:
            raise InvalidRequest("only fine_tune jobs carry a fine_tune spec", param="fine_tune")
        return None
    if fine_tune is None or not fine_tune.base_model.strip():
        raise InvalidRequest("a fine_tune job needs fine_tune.base_model", param="fine_tune.base_model")
    base, suffix = fine_tune.base_model.strip(), fine_tune.suffix.strip()
    if not _MODEL_ID.match(base):
        raise InvalidRequest(f"not a model id: {base!r}", param="fine_tune.base_model")
    if not _SUFFIX.match(suffix):
        raise InvalidRequest(
            "fine_tune.suffix is up to 64 characters of letters, digits, '.', '_' and '-'",
            param="fine_tune.suffix",
        )
    return FineTuneSpec(base, suffix)


def validate_labels(labels: dict[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise InvalidRequest(f"a job carries at most {MAX_LABELS} labels", param="labels")
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            raise InvalidRequest(
                f"label key {key!r} must be 1-64 letters, digits, '.', '_' or '-'", param="labels"
            )
        if len(value.encode()) > MAX_LABEL_VALUE_BYTES:
            raise InvalidRequest(f"label {key!r} is longer than 16 KiB", param="labels")


def validate_spec(spec: JobSpec) -> JobSpec:
    """Checks what can be checked without the cluster; normalises paths. Raises InvalidRequest."""
    if spec.job_type not in SUBMITTABLE:
        raise InvalidRequest("job_type must be pytorch, mpi, fine_tune or evaluation", param="job_type")
    fine_tune = validate_fine_tune(spec)
    validate_labels(spec.labels)
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
        fine_tune=fine_tune,
    )


class DeploymentStatus(enum.StrEnum):
    pending = "pending"  # waiting for slots
    deploying = "deploying"  # slots held; the serving controller starts the replicas
    ready = "ready"
    failed = "failed"
    stopping = "stopping"  # deleted; the controller drains it and reports it stopped
    stopped = "stopped"


# The statuses in which a deployment holds its slots on the ledger.
HOLDING_SLOTS = frozenset({DeploymentStatus.deploying, DeploymentStatus.ready, DeploymentStatus.stopping})
MAX_REPLICAS = 16


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    model_id: str
    model_path: str
    served_model: str
    adapter_id: str = ""
    adapter_path: str = ""
    gpu_type: str = ""  # "": any one type with free slots
    gpu_count: int = 1  # slots per replica
    min_replicas: int = 1
    max_replicas: int = 1  # slots held: gpu_count x max_replicas
    max_model_len: int = 0  # 0: the model's own context length
    public: bool = False

    @property
    def total_gpus(self) -> int:
        return self.gpu_count * self.max_replicas

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeploymentSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(slots=True)
class Deployment:
    id: str
    owner_id: str
    spec: DeploymentSpec
    status: DeploymentStatus
    status_reason: str
    gpu_type: str  # the type its slots were taken from
    node_ids: list[str]  # one entry per replica
    endpoint: str
    ready_replicas: int
    created_at: datetime
    updated_at: datetime


def validate_deployment_spec(spec: DeploymentSpec) -> DeploymentSpec:
    """Checks what can be checked without the cluster and fills in the defaults (0 on the wire
    means unset: one slot per replica, one replica; max_replicas is at least min_replicas)."""
    for param in ("model_id", "model_path", "served_model"):
        if not getattr(spec, param).strip():
            raise InvalidRequest(f"a deployment needs {param}", param=param)
    if spec.gpu_count < 0:
        raise InvalidRequest("gpu_count must be at least 1", param="gpu_count")
    if spec.min_replicas < 0 or spec.min_replicas > MAX_REPLICAS:
        raise InvalidRequest(f"min_replicas must be 1 to {MAX_REPLICAS}", param="min_replicas")
    if spec.max_replicas < 0 or spec.max_replicas > MAX_REPLICAS:
        raise InvalidRequest(f"max_replicas must be 1 to {MAX_REPLICAS}", param="max_replicas")
    min_replicas = spec.min_replicas or 1
    # A max below the min is raised to it: clients (and the REST API) default max_replicas to 1
    # and send only the min they want.
    max_replicas = max(min_replicas, spec.max_replicas)
    if spec.max_model_len < 0:
        raise InvalidRequest("max_model_len cannot be negative (0: the model's own)", param="max_model_len")
    return dataclasses.replace(
        spec,
        model_id=spec.model_id.strip(),
        model_path=spec.model_path.strip(),
        served_model=spec.served_model.strip(),
        adapter_id=spec.adapter_id.strip(),
        adapter_path=spec.adapter_path.strip(),
        gpu_type=spec.gpu_type.strip(),
        gpu_count=spec.gpu_count or 1,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
    )
