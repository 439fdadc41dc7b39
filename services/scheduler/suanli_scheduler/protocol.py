"""The agent protocol on NATS, scheduler side: subjects, protobuf <-> domain (jobs, deployments),
the subscribers that feed heartbeats and reports to the service, and the publisher of node
commands.

Heartbeats are core NATS (losing one is harmless; the next one says the same). Commands and
reports go through JetStream's WORK stream with acknowledgements, so neither is lost while the
other side is away; both are idempotent (attempt + lease id), so redelivery is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faststream.nats import NatsBroker
from nats.aio.msg import Msg

from suanli_common.bus import WORK, Outgoing, consume_batches, publish_batch, subscribe_plain
from suanli_common.logging import get_logger
from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_scheduler.domain import (
    Deployment,
    DeploymentSpec,
    DeploymentStatus,
    FineTuneSpec,
    InstanceLaunch,
    InstanceMount,
    JobSpec,
    JobStatus,
    JobType,
)
from suanli_scheduler.instance_specs import Instance, InstanceSpec, InstanceStatus
from suanli_scheduler.ledger import NodeInventory, SlotPool
from suanli_scheduler.messages import AttemptReport, AttemptSeen, Heartbeat, Offer, Stop

if TYPE_CHECKING:  # the service's modules import this one (events carry protobuf deployments)
    from suanli_scheduler.service import JobService

log = get_logger(__name__)

HEARTBEATS = "agent.heartbeat.*"
REPORTS = "work.report.>"
REPORTS_DURABLE = "scheduler-reports"


def node_subject(node_id: str) -> str:
    return f"work.node.{node_id}"


STATUS_TO_PB = {
    JobStatus.queued: pb.JOB_STATUS_QUEUED,
    JobStatus.preparing: pb.JOB_STATUS_PREPARING,
    JobStatus.running: pb.JOB_STATUS_RUNNING,
    JobStatus.succeeded: pb.JOB_STATUS_SUCCEEDED,
    JobStatus.failed: pb.JOB_STATUS_FAILED,
    JobStatus.cancelled: pb.JOB_STATUS_CANCELLED,
    JobStatus.timed_out: pb.JOB_STATUS_TIMED_OUT,
}
STATUS_FROM_PB = {v: k for k, v in STATUS_TO_PB.items()}
TYPE_TO_PB = {
    JobType.pytorch: pb.JOB_TYPE_PYTORCH,
    JobType.mpi: pb.JOB_TYPE_MPI,
    JobType.fine_tune: pb.JOB_TYPE_FINE_TUNE,
    JobType.deployment: pb.JOB_TYPE_DEPLOYMENT,
    JobType.evaluation: pb.JOB_TYPE_EVALUATION,
    JobType.instance: pb.JOB_TYPE_INSTANCE,
}
TYPE_FROM_PB = {v: k for k, v in TYPE_TO_PB.items()}


def spec_to_pb(spec: JobSpec) -> pb.JobSpec:
    message = pb.JobSpec(
        name=spec.name,
        job_type=TYPE_TO_PB[spec.job_type],
        command=spec.command,
        image=spec.image,
        nodes=spec.nodes,
        gpus_per_node=spec.gpus_per_node,
        gpu_type=spec.gpu_type,
        ckpt_path=spec.ckpt_path,
        model_save_path=spec.model_save_path,
        volume_gb=spec.volume_gb,
        env=spec.env,
        priority=spec.priority,
        model_path=spec.model_path,
        dataset_path=spec.dataset_path,
        labels=spec.labels,
        cpu_millis=spec.cpu_millis,
        memory_mb=spec.memory_mb,
    )
    if spec.instance is not None:
        message.instance.CopyFrom(instance_launch_to_pb(spec.instance))
    if spec.max_runtime_minutes is not None:
        message.max_runtime_minutes = spec.max_runtime_minutes
    if spec.fine_tune is not None:
        message.fine_tune.CopyFrom(
            pb.FineTuneSpec(base_model=spec.fine_tune.base_model, suffix=spec.fine_tune.suffix)
        )
    return message


def spec_from_pb(message: pb.JobSpec) -> JobSpec:
    return JobSpec(
        name=message.name,
        job_type=TYPE_FROM_PB.get(message.job_type, JobType.pytorch),
        command=message.command,
        image=message.image,
        nodes=message.nodes,
        gpus_per_node=message.gpus_per_node,
        gpu_type=message.gpu_type,
        ckpt_path=message.ckpt_path,
        model_save_path=message.model_save_path,
        volume_gb=message.volume_gb,
        env=dict(message.env),
        max_runtime_minutes=message.max_runtime_minutes if message.HasField("max_runtime_minutes") else None,
        priority=message.priority,
        model_path=message.model_path,
        dataset_path=message.dataset_path,
        # Present or absent, not empty: validation tells "no fine_tune" from "no base model".
        fine_tune=(
            FineTuneSpec(message.fine_tune.base_model, message.fine_tune.suffix)
            if message.HasField("fine_tune")
            else None
        ),
        labels=dict(message.labels),
        cpu_millis=message.cpu_millis,
        memory_mb=message.memory_mb,
        instance=instance_launch_from_pb(message.instance) if message.HasField("instance") else None,
    )


def mount_to_pb(mount: InstanceMount) -> pb.InstanceMount:
    return pb.InstanceMount(kind=mount.kind, id=mount.id, name=mount.name, source=mount.source)


def mount_from_pb(message: pb.InstanceMount) -> InstanceMount:
    return InstanceMount(message.kind, message.id, message.name, message.source)


def instance_launch_to_pb(launch: InstanceLaunch) -> pb.InstanceLaunch:
    return pb.InstanceLaunch(
        instance_id=launch.instance_id,
        kind=launch.kind,
        token=launch.token,
        base_url=launch.base_url,
        mounts=[mount_to_pb(m) for m in launch.mounts],
    )


def instance_launch_from_pb(message: pb.InstanceLaunch) -> InstanceLaunch:
    return InstanceLaunch(
        message.instance_id,
        message.kind,
        message.token,
        message.base_url,
        tuple(mount_from_pb(m) for m in message.mounts),
    )


DEPLOYMENT_STATUS_TO_PB = {
    DeploymentStatus.pending: pb.DEPLOYMENT_STATUS_PENDING,
    DeploymentStatus.deploying: pb.DEPLOYMENT_STATUS_DEPLOYING,
    DeploymentStatus.ready: pb.DEPLOYMENT_STATUS_READY,
    DeploymentStatus.failed: pb.DEPLOYMENT_STATUS_FAILED,
    DeploymentStatus.stopping: pb.DEPLOYMENT_STATUS_STOPPING,
    DeploymentStatus.stopped: pb.DEPLOYMENT_STATUS_STOPPED,
}
DEPLOYMENT_STATUS_FROM_PB = {v: k for k, v in DEPLOYMENT_STATUS_TO_PB.items()}


def deployment_spec_to_pb(spec: DeploymentSpec) -> pb.DeploymentSpec:
    return pb.DeploymentSpec(
        model_id=spec.model_id,
        model_path=spec.model_path,
        adapter_id=spec.adapter_id,
        adapter_path=spec.adapter_path,
        served_model=spec.served_model,
        gpu_type=spec.gpu_type,
        gpu_count=spec.gpu_count,
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        max_model_len=spec.max_model_len,
        public=spec.public,
    )


def deployment_spec_from_pb(message: pb.DeploymentSpec) -> DeploymentSpec:
    # 0 stays 0 here: validation fills in the defaults.
    return DeploymentSpec(
        model_id=message.model_id,
        model_path=message.model_path,
        served_model=message.served_model,
        adapter_id=message.adapter_id,
        adapter_path=message.adapter_path,
        gpu_type=message.gpu_type,
        gpu_count=message.gpu_count,
        min_replicas=message.min_replicas,
        max_replicas=message.max_replicas,
        max_model_len=message.max_model_len,
        public=message.public,
    )


def deployment_to_pb(deployment: Deployment) -> pb.Deployment:
    message = pb.Deployment(
        id=deployment.id,
        owner_id=deployment.owner_id,
        spec=deployment_spec_to_pb(deployment.spec),
        status=DEPLOYMENT_STATUS_TO_PB[deployment.status],
        status_reason=deployment.status_reason,
        gpu_type=deployment.gpu_type,
        node_ids=deployment.node_ids,
        endpoint=deployment.endpoint,
        ready_replicas=deployment.ready_replicas,
    )
    message.created_at.FromDatetime(deployment.created_at)
    message.updated_at.FromDatetime(deployment.updated_at)
    return message


INSTANCE_STATUS_TO_PB = {
    InstanceStatus.queued: pb.INSTANCE_STATUS_QUEUED,
    InstanceStatus.starting: pb.INSTANCE_STATUS_STARTING,
    InstanceStatus.running: pb.INSTANCE_STATUS_RUNNING,
    InstanceStatus.stopping: pb.INSTANCE_STATUS_STOPPING,
    InstanceStatus.stopped: pb.INSTANCE_STATUS_STOPPED,
    InstanceStatus.failed: pb.INSTANCE_STATUS_FAILED,
    InstanceStatus.deleted: pb.INSTANCE_STATUS_DELETED,
}


def instance_spec_from_pb(message: pb.InstanceSpec) -> InstanceSpec:
    return InstanceSpec(
        name=message.name,
        kind=message.kind,
        cpu_millis=message.cpu_millis,
        memory_mb=message.memory_mb,
        gpus=message.gpus,
        gpu_type=message.gpu_type,
        storage_gb=message.storage_gb,
        mounts=tuple(mount_from_pb(m) for m in message.mounts),
    )


def instance_to_pb(instance: Instance) -> pb.Instance:
    spec = instance.spec
    message = pb.Instance(
        id=instance.id,
        owner_id=instance.owner_id,
        spec=pb.InstanceSpec(
            name=spec.name,
            kind=spec.kind,
            cpu_millis=spec.cpu_millis,
            memory_mb=spec.memory_mb,
            gpus=spec.gpus,
            gpu_type=spec.gpu_type,
            storage_gb=spec.storage_gb,
            mounts=[mount_to_pb(m) for m in spec.mounts],
        ),
        status=INSTANCE_STATUS_TO_PB[instance.status],
        status_reason=instance.status_reason,
        job_id=instance.job_id,
        node_id=instance.node_id,
        endpoint=instance.endpoint,
        token=instance.token,
        base_url=instance.base_url,
        storage_path=instance.storage_path,
    )
    message.created_at.FromDatetime(instance.created_at)
    if instance.started_at is not None:
        message.started_at.FromDatetime(instance.started_at)
    return message


def heartbeat_from_pb(message: pb.AgentHeartbeat) -> Heartbeat:
    pools = tuple(SlotPool(g.gpu_type, g.total, g.memory_mb, g.used) for g in message.gpus)
    ports = (message.port_range_start or 29500, message.port_range_end or 29999)
    inventory = NodeInventory(
        message.node_id,
        message.address,
        pools,
        message.container_runtime,
        ports,
        message.instance_id,
        message.cpu_millis,
        message.memory_mb,
        tuple(sorted(message.unavailable_instance_kinds.items())),
    )
    attempts = tuple(
        AttemptSeen(
            a.job_id,
            a.attempt,
            a.lease_id,
            STATUS_FROM_PB.get(a.phase, JobStatus.queued),
            a.exit_code,
            a.message,
            a.result_json,
            a.endpoint,
        )
        for a in message.attempts
    )
    return Heartbeat(inventory, attempts)


def report_from_pb(message: pb.JobReport, traceparent: str = "") -> AttemptReport:
    return AttemptReport(
        node_id=message.node_id,
        job_id=message.job_id,
        attempt=message.attempt,
        lease_id=message.lease_id,
        phase=STATUS_FROM_PB.get(message.phase, JobStatus.queued),
        exit_code=message.exit_code,
        message=message.message,
        progress=message.progress,
        result_json=message.result_json,
        endpoint=message.endpoint,
        traceparent=traceparent,
    )


class NatsNodeCommands:
    """Sends offers and stops to their nodes' JetStream subjects, a batch at a time, waiting for
    the stream's acks; an offer travels in the submitter's trace (its headers carry it)."""

    def __init__(self, broker: NatsBroker) -> None:
        self._broker = broker

    async def send(self, commands: Sequence[tuple[str, Offer | Stop]]) -> list[BaseException | None]:
        if not commands:
            return []
        messages = [
            Outgoing(
                node_subject(node_id),
                command_to_pb(command).SerializeToString(),
                command.traceparent if isinstance(command, Offer) else "",
            )
            for node_id, command in commands
        ]
        return await publish_batch(self._broker, WORK.name, messages)


def command_to_pb(command: Offer | Stop) -> pb.NodeCommand:
    if isinstance(command, Stop):
        return pb.NodeCommand(
            stop=pb.StopWork(
                job_id=command.job_id,
                attempt=command.attempt,
                reason=STATUS_TO_PB[command.reason],
                message=command.message,
                delete_storage=command.delete_storage,
            )
        )
    return pb.NodeCommand(
        offer=pb.WorkOffer(
            job_id=command.job_id,
            attempt=command.attempt,
            lease_id=command.lease_id,
            spec=spec_to_pb(command.spec),
            owner_id=command.owner_id,
            node_rank=command.node_rank,
            nnodes=command.nnodes,
            master_addr=command.master_addr,
            master_port=command.master_port,
            gpu_type=command.gpu_type,
            resume=command.resume,
            max_runtime_s=command.max_runtime_s,
        )
    )


async def subscribe_heartbeats(broker: NatsBroker, service: JobService) -> Any:
    """Feeds agent heartbeats (core NATS: losing one is harmless, the next says the same) to the
    service; start it once connected. A hundred agents beat a hundred times a second: plainly,
    without a span and middleware stack per beat."""

    async def on_heartbeat(message: Msg) -> None:
        try:
            beat = heartbeat_from_pb(pb.AgentHeartbeat.FromString(message.data))
        except Exception:
            log.warning("undecodable heartbeat", subject=message.subject)
            return
        await service.on_heartbeat(beat)

    return await subscribe_plain(broker, HEARTBEATS, on_heartbeat)


async def consume_reports(broker: NatsBroker, service: JobService) -> None:
    """Feeds agents' reports (the durable JetStream consumer) to the service a batch at a time,
    acknowledging each once it is committed. Runs until cancelled; start it once connected.

    Reports come by the thousand when many jobs start and end together; taken in batches they are
    applied in one transaction per batch, without a per-message middleware stack."""

    async def on_batch(messages: list[Msg]) -> list[BaseException | None]:
        reports: list[AttemptReport | None] = []
        for message in messages:
            try:
                reports.append(
                    report_from_pb(
                        pb.JobReport.FromString(message.data),
                        (message.headers or {}).get("traceparent", ""),
                    )
                )
            except Exception:
                log.warning("undecodable report dropped", subject=message.subject)
                reports.append(None)  # acknowledged: redelivering it cannot help
        applied = iter(await service.on_reports([r for r in reports if r is not None]))
        return [next(applied) if r is not None else None for r in reports]

    await consume_batches(broker, REPORTS, WORK, REPORTS_DURABLE, on_batch)
