"""Instances as the scheduler sees them: their kinds, specs and statuses, the checks a spec must
pass, the job each start becomes, and the status an instance shows, derived from that job."""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from suanli_common.errors import InvalidRequest
from suanli_scheduler.domain import InstanceLaunch, InstanceMount, Job, JobSpec, JobStatus, JobType


class InstanceKind(enum.StrEnum):
    jupyterlab = "jupyterlab"
    llamafactory = "llamafactory"
    tensorboard = "tensorboard"


class InstanceStatus(enum.StrEnum):
    queued = "queued"  # waiting for a node with the CPU, memory and GPUs it reserves
    starting = "starting"  # placed: mounts staged, its server not answering yet
    running = "running"
    stopping = "stopping"
    stopped = "stopped"
    failed = "failed"
    deleted = "deleted"


class Desired(enum.StrEnum):
    """What the owner asked for last; the status follows once the run catches up."""

    running = "running"
    stopped = "stopped"
    deleted = "deleted"


# Copied into the instance's storage read-only, under <storage>/<kind>s/<name>.
COPIED_MOUNTS = ("model", "dataset", "adapter")
# Read in place: a job's volume or another instance's workspace, as TensorBoard log folders.
LOG_MOUNTS = ("job", "instance")
MAX_MOUNTS = 32
MAX_GPUS = 64
MAX_CPU_MILLIS = 1024 * 1000
MIN_CPU_MILLIS = 100
MIN_MEMORY_MB = 256
MAX_STORAGE_GB = 100_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,255}$")


def base_url(instance_id: str) -> str:
    """The gateway's path of the instance (its server runs behind it, links included)."""
    return f"/instances/{instance_id}/"


def storage_path(volumes_dir: str, instance_id: str) -> str:
    return str(PurePosixPath(volumes_dir) / "instances" / instance_id)


def workspace_path(volumes_dir: str, instance_id: str) -> str:
    """The instance's own files (the JupyterLab's notebooks); TensorBoard reads it as a log folder."""
    return f"{storage_path(volumes_dir, instance_id)}/work"


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    name: str
    kind: str
    cpu_millis: int = 1000
    memory_mb: int = 2048
    gpus: int = 0
    gpu_type: str = ""
    storage_gb: int = 0  # 0: not checked against the node's free disk
    mounts: tuple[InstanceMount, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstanceSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["mounts"] = tuple(InstanceMount(**m) for m in values.get("mounts") or ())
        return cls(**values)


@dataclass(slots=True)
class Instance:
    id: str
    owner_id: str
    spec: InstanceSpec
    status: InstanceStatus
    status_reason: str
    job_id: str
    node_id: str
    endpoint: str  # host:port of its server, while running
    token: str
    base_url: str
    storage_path: str
    created_at: datetime
    started_at: datetime | None


def _check_name(value: str, what: str, param: str) -> None:
    if value in ("", ".", "..") or "/" in value or "\x00" in value or len(value) > 255:
        raise InvalidRequest(f"{what} {value!r} is not a usable file name", param=param)


def validate_instance_spec(spec: InstanceSpec) -> InstanceSpec:
    """Checks what can be checked without the cluster. Raises InvalidRequest."""
    name = spec.name.strip()
    if not _NAME.match(name):
        raise InvalidRequest(
            "name is 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", param="name"
        )
    if spec.kind not in InstanceKind.__members__:
        kinds = ", ".join(k.value for k in InstanceKind)
        raise InvalidRequest(f"kind must be one of {kinds}", param="kind")
    if not MIN_CPU_MILLIS <= spec.cpu_millis <= MAX_CPU_MILLIS:
        raise InvalidRequest(
            f"cpu must be from {MIN_CPU_MILLIS / 1000:g} to {MAX_CPU_MILLIS // 1000} cores", param="cpu"
        )
    if spec.memory_mb < MIN_MEMORY_MB:
        raise InvalidRequest(f"memory_gb must be at least {MIN_MEMORY_MB / 1024:g}", param="memory_gb")
    if not 0 <= spec.gpus <= MAX_GPUS:
        raise InvalidRequest(f"gpus must be from 0 to {MAX_GPUS}", param="gpus")
    gpu_type = spec.gpu_type.strip()
    if gpu_type and not spec.gpus:
        raise InvalidRequest("gpu_type needs gpus of at least 1", param="gpu_type")
    if not 0 <= spec.storage_gb <= MAX_STORAGE_GB:
        raise InvalidRequest(f"storage_gb must be from 0 to {MAX_STORAGE_GB}", param="storage_gb")
    _check_mounts(spec)
    return dataclasses.replace(spec, name=name, gpu_type=gpu_type)


def _check_mounts(spec: InstanceSpec) -> None:
    if len(spec.mounts) > MAX_MOUNTS:
        raise InvalidRequest(f"an instance mounts at most {MAX_MOUNTS} inputs", param="mounts")
    seen: set[tuple[str, str]] = set()
    for mount in spec.mounts:
        param = f"mounts.{mount.kind}s"
        if mount.kind not in COPIED_MOUNTS + LOG_MOUNTS:
            raise InvalidRequest(f"unknown mount kind {mount.kind!r}", param="mounts")
        if mount.kind in LOG_MOUNTS and spec.kind != InstanceKind.tensorboard:
            raise InvalidRequest(
                f"{mount.kind}s are mounted as TensorBoard log folders: only tensorboard instances take them",
                param=param,
            )
        if not _ID.match(mount.id):
            raise InvalidRequest(f"not an id: {mount.id!r}", param=param)
        _check_name(mount.name, f"the {mount.kind} mount name", param)
        if mount.kind in COPIED_MOUNTS and not mount.source:
            raise InvalidRequest(f"the {mount.kind} {mount.id!r} has no source to copy", param=param)
        if (mount.kind, mount.name) in seen:
            raise InvalidRequest(f"two {mount.kind}s are mounted as {mount.name!r}", param=param)
        seen.add((mount.kind, mount.name))
    if spec.kind == InstanceKind.tensorboard and not any(m.kind in LOG_MOUNTS for m in spec.mounts):
        raise InvalidRequest(
            "a tensorboard instance reads the event files of jobs or instances: mount at least one",
            param="mounts.jobs",
        )


def run_spec(instance_id: str, spec: InstanceSpec, token: str) -> JobSpec:
    """The job a start of the instance becomes."""
    return JobSpec(
        name=f"instance {spec.name} ({spec.kind})",
        job_type=JobType.instance,
        gpus_per_node=spec.gpus,
        gpu_type=spec.gpu_type,
        volume_gb=spec.storage_gb,
        cpu_millis=spec.cpu_millis,
        memory_mb=spec.memory_mb,
        instance=InstanceLaunch(instance_id, spec.kind, token, base_url(instance_id), spec.mounts),
    )


def derive_status(desired: Desired, job: Job | None, server_up: bool = False) -> tuple[InstanceStatus, str]:
    """The instance's status and its reason, from what its owner wants, its current run and whether
    that run's server is still going (its job may have ended before it)."""
    if desired is Desired.deleted:
        return InstanceStatus.deleted, "deleted by its owner"
    if job is None:
        return InstanceStatus.stopped, ""
    if job.status.terminal and server_up:
        return InstanceStatus.stopping, "stopping its server"
    if job.status.terminal:
        if desired is Desired.stopped:
            return InstanceStatus.stopped, "stopped by its owner"
        if job.status in (JobStatus.failed, JobStatus.timed_out):
            return InstanceStatus.failed, job.status_reason
        if job.status is JobStatus.succeeded:
            return InstanceStatus.stopped, "its server exited"
        return InstanceStatus.stopped, job.status_reason
    if desired is Desired.stopped:
        return InstanceStatus.stopping, "stopping its server"
    if job.status is JobStatus.queued:
        return InstanceStatus.queued, job.status_reason
    if job.status is JobStatus.preparing or not job.endpoint:
        return InstanceStatus.starting, job.status_reason or "starting its server"
    return InstanceStatus.running, ""
