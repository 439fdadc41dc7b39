"""The SchedulerService gRPC servicer: protobuf in, one service call, protobuf out."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

import grpc

from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.proto.suanli.v1 import scheduler_pb2_grpc
from suanli_scheduler.deployments import DeploymentReport
from suanli_scheduler.domain import Job
from suanli_scheduler.protocol import (
    DEPLOYMENT_STATUS_FROM_PB,
    STATUS_TO_PB,
    TYPE_FROM_PB,
    deployment_spec_from_pb,
    deployment_to_pb,
    instance_spec_from_pb,
    instance_to_pb,
    spec_from_pb,
    spec_to_pb,
)
from suanli_scheduler.service import JobService

Context: TypeAlias = grpc.aio.ServicerContext


def _timestamp(message: Any, field: str, value: datetime | None) -> None:
    if value is not None:
        getattr(message, field).FromDatetime(value)


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServiceServicer):
    def __init__(self, service: JobService, volumes_root: str) -> None:
        self._service = service
        self._volumes_root = volumes_root

    def job_pb(self, job: Job) -> pb.Job:
        message = pb.Job(
            id=job.id,
            owner_id=job.owner_id,
            spec=spec_to_pb(job.spec),
            status=STATUS_TO_PB[job.status],
            status_reason=job.status_reason,
            node_ids=job.node_ids,
            attempt=job.attempt,
            progress=job.progress,
            result_json=job.result_json,
            output_model_id=job.output_model_id,
            endpoint=job.endpoint,
        )
        if job.spec.model_save_path:
            message.output_path = f"{self._volumes_root}/{job.id}/{job.spec.model_save_path}"
        _timestamp(message, "created_at", job.created_at)
        _timestamp(message, "started_at", job.started_at)
        _timestamp(message, "finished_at", job.finished_at)
        return message

    async def SubmitJob(self, request: pb.SubmitJobRequest, context: Context) -> pb.Job:
        job = await self._service.submit(
            request.owner_id, request.client_request_id, spec_from_pb(request.spec)
        )
        return self.job_pb(job)

    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.Job:
        return self.job_pb(await self._service.get(request.caller_id, request.job_id))

    async def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        job_type = TYPE_FROM_PB.get(request.job_type)
        jobs = await self._service.list_jobs(request.caller_id, job_type.value if job_type else None)
        return pb.ListJobsResponse(jobs=[self.job_pb(j) for j in jobs])

    async def CancelJob(self, request: pb.CancelJobRequest, context: Context) -> pb.Job:
        return self.job_pb(await self._service.cancel(request.caller_id, request.job_id))

    async def ListGpus(self, request: pb.ListGpusRequest, context: Context) -> pb.ListGpusResponse:
        gpus = [
            pb.GpuSlots(node_id=node, gpu_type=kind, total=total, used=used, memory_mb=memory)
            for node, kind, total, used, memory, alive in self._service.gpus()
            if alive
        ]
        return pb.ListGpusResponse(gpus=gpus)

    # ---- deployments ---------------------------------------------------------------------------

    async def CreateDeployment(self, request: pb.CreateDeploymentRequest, context: Context) -> pb.Deployment:
        deployment = await self._service.deployments.create(
            request.owner_id, request.client_request_id, deployment_spec_from_pb(request.spec)
        )
        return deployment_to_pb(deployment)

    async def GetDeployment(self, request: pb.GetDeploymentRequest, context: Context) -> pb.Deployment:
        return deployment_to_pb(await self._service.deployments.get(request.caller_id, request.deployment_id))

    async def ListDeployments(
        self, request: pb.ListDeploymentsRequest, context: Context
    ) -> pb.ListDeploymentsResponse:
        found = await self._service.deployments.list_deployments(request.caller_id, request.include_public)
        return pb.ListDeploymentsResponse(deployments=[deployment_to_pb(d) for d in found])

    async def DeleteDeployment(self, request: pb.DeleteDeploymentRequest, context: Context) -> pb.Deployment:
        return deployment_to_pb(
            await self._service.deployments.delete(request.caller_id, request.deployment_id)
        )

    async def ReportDeployment(self, request: pb.ReportDeploymentRequest, context: Context) -> pb.Deployment:
        report = DeploymentReport(
            deployment_id=request.deployment_id,
            status=DEPLOYMENT_STATUS_FROM_PB.get(request.status),
            reason=request.reason,
            endpoint=request.endpoint,
            ready_replicas=request.ready_replicas,
        )
        return deployment_to_pb(await self._service.deployments.report(report))

    # ---- instances -----------------------------------------------------------------------------

    async def CreateInstance(self, request: pb.CreateInstanceRequest, context: Context) -> pb.Instance:
        instance = await self._service.instances.create(request.owner_id, instance_spec_from_pb(request.spec))
        return instance_to_pb(instance)

    async def GetInstance(self, request: pb.GetInstanceRequest, context: Context) -> pb.Instance:
        return instance_to_pb(await self._service.instances.get(request.caller_id, request.instance_id))

    async def ListInstances(
        self, request: pb.ListInstancesRequest, context: Context
    ) -> pb.ListInstancesResponse:
        found = await self._service.instances.list_instances(request.caller_id)
        return pb.ListInstancesResponse(instances=[instance_to_pb(i) for i in found])

    async def StopInstance(self, request: pb.StopInstanceRequest, context: Context) -> pb.Instance:
        return instance_to_pb(await self._service.instances.stop(request.caller_id, request.instance_id))

    async def StartInstance(self, request: pb.StartInstanceRequest, context: Context) -> pb.Instance:
        return instance_to_pb(await self._service.instances.start(request.caller_id, request.instance_id))

    async def DeleteInstance(self, request: pb.DeleteInstanceRequest, context: Context) -> pb.Instance:
        return instance_to_pb(await self._service.instances.delete(request.caller_id, request.instance_id))
