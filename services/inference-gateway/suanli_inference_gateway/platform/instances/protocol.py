"""Wire models of /api/v1/instances."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from suanli_inference_gateway.clients.instances import Instance, InstanceStatus
from suanli_inference_gateway.platform.protocol import RequestModel, optional_unix_seconds, unix_seconds

MAX_MOUNTS_PER_KIND = 16
# The folder of each mounted kind, under the instance's storage.
MOUNT_FOLDERS = {"model": "models", "dataset": "datasets", "adapter": "adapters"}


class MountsRequest(RequestModel):
    models: list[str] = Field(
        default_factory=list,
        max_length=MAX_MOUNTS_PER_KIND,
        description="Model ids of the repository, copied in read-only under models/<id>",
    )
    datasets: list[str] = Field(
        default_factory=list,
        max_length=MAX_MOUNTS_PER_KIND,
        description="Your file ids, copied in read-only under datasets/<filename>",
    )
    adapters: list[str] = Field(
        default_factory=list,
        max_length=MAX_MOUNTS_PER_KIND,
        description="LoRA adapter ids, copied in read-only under adapters/<id>",
    )
    jobs: list[str] = Field(
        default_factory=list,
        max_length=MAX_MOUNTS_PER_KIND,
        description="tensorboard: your jobs (fine-tunes among them) whose event files it shows",
    )
    instances: list[str] = Field(
        default_factory=list,
        max_length=MAX_MOUNTS_PER_KIND,
        description="tensorboard: your instances whose workspace event files it shows",
    )


class CreateInstanceRequest(RequestModel):
    """A dev lab instance: a server placed by the scheduler with the resources it reserves."""

    name: str = Field(
        min_length=1, max_length=63, description="Unique among your instances: letters, digits, '.', '_', '-'"
    )
    kind: Literal["jupyterlab", "llamafactory", "tensorboard"]
    cpu: float = Field(1.0, gt=0, le=1024, description="CPU cores reserved on its node")
    memory_gb: float = Field(2.0, gt=0, le=100_000, description="Memory reserved on its node")
    gpus: int = Field(0, ge=0, le=64, description="GPU slots (CPU slots on nodes without GPUs)")
    gpu_type: str | None = Field(None, max_length=64, description="A GPU type of the cluster; any if absent")
    storage_gb: int = Field(
        10, ge=0, le=100_000, description="Its storage (workspace and copies), checked against free disk"
    )
    mounts: MountsRequest = Field(default_factory=MountsRequest)


class MountObject(BaseModel):
    kind: Literal["model", "dataset", "adapter", "job", "instance"]
    id: str
    path: str = Field(description="Where the instance sees it (read-only)")


class InstanceObject(BaseModel):
    id: str
    object: Literal["instance"] = "instance"
    name: str
    kind: str
    status: InstanceStatus
    status_reason: str
    url: str = Field(description="Where to open it, through the gateway (owner only)")
    cpu: float
    memory_gb: float
    gpus: int
    gpu_type: str | None
    storage_gb: int
    storage_path: str = Field(description="Its storage on the node: workspace at work/, mounts beside it")
    mounts: list[MountObject]
    job_id: str = Field(description="Its current run, a job (its log: GET /api/v1/instances/{id}/logs)")
    node_id: str | None
    created_at: int
    started_at: int | None

    @classmethod
    def of(cls, instance: Instance) -> InstanceObject:
        spec = instance.spec
        return cls(
            id=instance.id,
            name=spec.name,
            kind=spec.kind.value,
            status=instance.status,
            status_reason=instance.status_reason,
            url=instance.base_url + ("lab" if spec.kind == "jupyterlab" else ""),
            cpu=spec.cpu_millis / 1000,
            memory_gb=round(spec.memory_mb / 1024, 3),
            gpus=spec.gpus,
            gpu_type=spec.gpu_type or None,
            storage_gb=spec.storage_gb,
            storage_path=instance.storage_path,
            mounts=[
                MountObject(
                    kind=m.kind,  # type: ignore[arg-type]
                    id=m.id,
                    path=(
                        f"{instance.storage_path}/{MOUNT_FOLDERS[m.kind]}/{m.name}"
                        if m.kind in MOUNT_FOLDERS
                        else m.source
                    ),
                )
                for m in spec.mounts
            ],
            job_id=instance.job_id,
            node_id=instance.node_id or None,
            created_at=unix_seconds(instance.created_at),
            started_at=optional_unix_seconds(instance.started_at),
        )


class InstanceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[InstanceObject]
