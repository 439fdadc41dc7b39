"""Wire models of /api/v1/jobs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from suanli_inference_gateway.clients.job_logs import LogLine
from suanli_inference_gateway.clients.scheduler import Job, JobSpec, JobStatus, JobType
from suanli_inference_gateway.platform.protocol import RequestModel, optional_unix_seconds, unix_seconds


class CreateJobRequest(RequestModel):
    """A custom job: a command (run on the node, or in `image`) over nodes x GPU slots."""

    name: str = Field("", max_length=200, description="A label to recognise the job by")
    command: str | None = Field(
        None, max_length=65536, description="Shell command to run; needs no image (runs on the node)"
    )
    image: str | None = Field(
        None, max_length=1024, description="Container image (needs docker or podman on a node)"
    )
    job_type: Literal["pytorch", "mpi"] = Field(
        "pytorch",
        description="pytorch: a python/torchrun command runs under torchrun across the nodes "
        "(RANK, WORLD_SIZE, MASTER_ADDR set); mpi: node rank 0 runs mpirun over a hostfile of all "
        "nodes (slots = gpus_per_node), starting the other nodes' ranks through their agents; a "
        "command not starting with mpirun runs as `mpirun -np <nodes x gpus_per_node> <command>`",
    )
    nodes: int = Field(1, ge=1, le=1024, description="How many nodes")
    gpus_per_node: int = Field(1, ge=1, le=64, description="GPU slots on each node")
    gpu_type: str | None = Field(None, max_length=64, description="A GPU type of the cluster; any if absent")
    ckpt_path: str = Field("", max_length=1024, description="Checkpoint folder, inside the job's volume")
    model_save_path: str = Field("", max_length=1024, description="Output folder, inside the job's volume")
    volume_gb: int = Field(0, ge=0, le=100_000, description="Size of the job's volume (0: no limit)")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables")
    max_runtime_minutes: int | None = Field(
        None, ge=1, description="Stop the job (timed_out) after this long; left out: run to completion"
    )

    def to_spec(self) -> JobSpec:
        return JobSpec(
            name=self.name,
            job_type=JobType(self.job_type),
            command=self.command or "",
            image=self.image or "",
            nodes=self.nodes,
            gpus_per_node=self.gpus_per_node,
            gpu_type=self.gpu_type or "",
            ckpt_path=self.ckpt_path,
            model_save_path=self.model_save_path,
            volume_gb=self.volume_gb,
            env=self.env,
            max_runtime_minutes=self.max_runtime_minutes,
        )


class JobObject(BaseModel):
    id: str
    object: Literal["job"] = "job"
    name: str
    status: JobStatus
    status_reason: str = Field(description="Why it waits, failed or ended")
    job_type: str
    command: str | None
    image: str | None
    nodes: int
    gpus_per_node: int
    gpu_type: str | None
    ckpt_path: str
    model_save_path: str
    output_path: str | None = Field(description="Where the model save path lies on the job's volume")
    volume_gb: int
    env: dict[str, str]
    max_runtime_minutes: int | None
    node_ids: list[str]
    attempt: int = Field(description="Placements so far (a lost node requeues the job)")
    progress: float = Field(description="0..1 while preparing (staging inputs)")
    created_at: int
    started_at: int | None
    finished_at: int | None

    @classmethod
    def of(cls, job: Job) -> JobObject:
        spec = job.spec
        return cls(
            id=job.id,
            name=spec.name,
            status=job.status,
            status_reason=job.status_reason,
            job_type=spec.job_type.value,
            command=spec.command or None,
            image=spec.image or None,
            nodes=spec.nodes,
            gpus_per_node=spec.gpus_per_node,
            gpu_type=spec.gpu_type or None,
            ckpt_path=spec.ckpt_path,
            model_save_path=spec.model_save_path,
            output_path=job.output_path or None,
            volume_gb=spec.volume_gb,
            env=dict(spec.env),
            max_runtime_minutes=spec.max_runtime_minutes,
            node_ids=job.node_ids,
            attempt=job.attempt,
            progress=job.progress,
            created_at=unix_seconds(job.created_at),
            started_at=optional_unix_seconds(job.started_at),
            finished_at=optional_unix_seconds(job.finished_at),
        )


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobObject]


class LogEvent(BaseModel):
    """The data of one SSE event of GET /api/v1/jobs/{id}/logs: one line a job printed."""

    node: str
    stream: str
    line: str
    attempt: int

    @classmethod
    def of(cls, line: LogLine) -> LogEvent:
        return cls(node=line.node, stream=line.stream, line=line.line, attempt=line.attempt)


class LogEndEvent(BaseModel):
    """The data of the final `end` event: how the job ended."""

    id: str
    status: JobStatus
    status_reason: str

    @classmethod
    def of(cls, job: Job) -> LogEndEvent:
        return cls(id=job.id, status=job.status, status_reason=job.status_reason)
