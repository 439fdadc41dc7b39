"""The scheduler as the gateway sees it: jobs (custom jobs, fine-tunes, evaluations) and the GPU
inventory, as domain dataclasses.

Errors need no translation here: the gRPC client interceptor raises the `SuanliError` the
scheduler raised (an `InvalidRequest` with its param, a `NotFound` for another user's job).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.proto.suanli.v1 import scheduler_pb2_grpc
from suanli_common.telemetry import annotate

SCHEDULER_SERVICE = "suanli.v1.SchedulerService"
# SubmitJob is retried too: the scheduler stores one job per (owner, client_request_id).
IDEMPOTENT_METHODS = ("SubmitJob", "GetJob", "ListJobs", "ListGpus")


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
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled, JobStatus.timed_out)


class JobType(enum.StrEnum):
    pytorch = "pytorch"
    mpi = "mpi"
    fine_tune = "fine_tune"
    deployment = "deployment"
    evaluation = "evaluation"
    instance = "instance"  # an instance's run (see clients.instances)


_STATUS_FROM_PB = {
    pb.JOB_STATUS_QUEUED: JobStatus.queued,
    pb.JOB_STATUS_PREPARING: JobStatus.preparing,
    pb.JOB_STATUS_RUNNING: JobStatus.running,
    pb.JOB_STATUS_SUCCEEDED: JobStatus.succeeded,
    pb.JOB_STATUS_FAILED: JobStatus.failed,
    pb.JOB_STATUS_CANCELLED: JobStatus.cancelled,
    pb.JOB_STATUS_TIMED_OUT: JobStatus.timed_out,
}
_TYPE_TO_PB = {
    JobType.pytorch: pb.JOB_TYPE_PYTORCH,
    JobType.mpi: pb.JOB_TYPE_MPI,
    JobType.fine_tune: pb.JOB_TYPE_FINE_TUNE,
    JobType.deployment: pb.JOB_TYPE_DEPLOYMENT,
    JobType.evaluation: pb.JOB_TYPE_EVALUATION,
    JobType.instance: pb.JOB_TYPE_INSTANCE,
}
_TYPE_FROM_PB = {v: k for k, v in _TYPE_TO_PB.items()}


@dataclass(frozen=True, slots=True)
class FineTuneSpec:
    base_model: str
    suffix: str = ""


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
    env: Mapping[str, str] = field(default_factory=dict)
    max_runtime_minutes: int | None = None  # None: run to completion
    model_path: str = ""  # a local path or URL the agent stages as SUANLI_MODEL_PATH
    dataset_path: str = ""  # likewise, SUANLI_DATASET_PATH
    fine_tune: FineTuneSpec | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    owner_id: str
    spec: JobSpec
    status: JobStatus
    status_reason: str
    node_ids: list[str]
    attempt: int
    progress: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    output_path: str
    result_json: str = ""  # what the succeeded process left in its output's result.json
    output_model_id: str = ""  # fine-tunes: the id its merged model is registered under


@dataclass(frozen=True, slots=True)
class GpuSlots:
    """One node's slots of one GPU type."""

    node_id: str
    gpu_type: str
    total: int
    used: int
    memory_mb: int


class SchedulerApi(Protocol):
    async def submit_job(self, owner_id: str, client_request_id: str, spec: JobSpec) -> Job: ...
    async def get_job(self, caller_id: str, job_id: str) -> Job: ...
    async def list_jobs(self, caller_id: str, job_type: JobType | None = None) -> list[Job]: ...
    async def cancel_job(self, caller_id: str, job_id: str) -> Job: ...
    async def list_gpus(self) -> list[GpuSlots]: ...


def _spec_pb(spec: JobSpec) -> pb.JobSpec:
    message = pb.JobSpec(
        name=spec.name,
        job_type=_TYPE_TO_PB[spec.job_type],
        command=spec.command,
        image=spec.image,
        nodes=spec.nodes,
        gpus_per_node=spec.gpus_per_node,
        gpu_type=spec.gpu_type,
        ckpt_path=spec.ckpt_path,
        model_save_path=spec.model_save_path,
        volume_gb=spec.volume_gb,
        env=dict(spec.env),
        model_path=spec.model_path,
        dataset_path=spec.dataset_path,
        labels=dict(spec.labels),
    )
    if spec.fine_tune is not None:
        message.fine_tune.CopyFrom(
            pb.FineTuneSpec(base_model=spec.fine_tune.base_model, suffix=spec.fine_tune.suffix)
        )
    if spec.max_runtime_minutes is not None:
        message.max_runtime_minutes = spec.max_runtime_minutes
    return message


def _spec(msg: pb.JobSpec) -> JobSpec:
    return JobSpec(
        name=msg.name,
        job_type=_TYPE_FROM_PB.get(msg.job_type, JobType.pytorch),
        command=msg.command,
        image=msg.image,
        nodes=msg.nodes,
        gpus_per_node=msg.gpus_per_node,
        gpu_type=msg.gpu_type,
        ckpt_path=msg.ckpt_path,
        model_save_path=msg.model_save_path,
        volume_gb=msg.volume_gb,
        env=dict(msg.env),
        max_runtime_minutes=msg.max_runtime_minutes if msg.HasField("max_runtime_minutes") else None,
        model_path=msg.model_path,
        dataset_path=msg.dataset_path,
        fine_tune=(
            FineTuneSpec(base_model=msg.fine_tune.base_model, suffix=msg.fine_tune.suffix)
            if msg.HasField("fine_tune")
            else None
        ),
        labels=dict(msg.labels),
    )


def _job(msg: pb.Job) -> Job:
    return Job(
        id=msg.id,
        owner_id=msg.owner_id,
        spec=_spec(msg.spec),
        status=_STATUS_FROM_PB.get(msg.status, JobStatus.queued),
        status_reason=msg.status_reason,
        node_ids=list(msg.node_ids),
        attempt=msg.attempt,
        progress=msg.progress,
        created_at=msg.created_at.ToDatetime(UTC),
        started_at=msg.started_at.ToDatetime(UTC) if msg.HasField("started_at") else None,
        finished_at=msg.finished_at.ToDatetime(UTC) if msg.HasField("finished_at") else None,
        output_path=msg.output_path,
        result_json=msg.result_json,
        output_model_id=msg.output_model_id,
    )


class SchedulerClient:
    """`SchedulerApi` over gRPC (a channel from `suanli_common.grpc.make_channel`)."""

    def __init__(self, stub: scheduler_pb2_grpc.SchedulerServiceStub) -> None:
        self._stub = stub

    async def submit_job(self, owner_id: str, client_request_id: str, spec: JobSpec) -> Job:
        request = pb.SubmitJobRequest(
            owner_id=owner_id, client_request_id=client_request_id, spec=_spec_pb(spec)
        )
        job = _job(await self._stub.SubmitJob(request))
        annotate({"suanli.job.id": job.id, "suanli.job.type": job.spec.job_type.value})  # the request's span
        return job

    async def get_job(self, caller_id: str, job_id: str) -> Job:
        return _job(await self._stub.GetJob(pb.GetJobRequest(caller_id=caller_id, job_id=job_id)))

    async def list_jobs(self, caller_id: str, job_type: JobType | None = None) -> list[Job]:
        request = pb.ListJobsRequest(caller_id=caller_id)
        if job_type is not None:
            request.job_type = _TYPE_TO_PB[job_type]
        response = await self._stub.ListJobs(request)
        return [_job(job) for job in response.jobs]

    async def cancel_job(self, caller_id: str, job_id: str) -> Job:
        return _job(await self._stub.CancelJob(pb.CancelJobRequest(caller_id=caller_id, job_id=job_id)))

    async def list_gpus(self) -> list[GpuSlots]:
        response = await self._stub.ListGpus(pb.ListGpusRequest())
        return [
            GpuSlots(
                node_id=slots.node_id,
                gpu_type=slots.gpu_type,
                total=slots.total,
                used=slots.used,
                memory_mb=slots.memory_mb,
            )
            for slots in response.gpus
        ]
