"""The facts metering consumes, turned into ledger entries: usage.recorded (the gateway), job.*
and deployment.* (the scheduler). Durable consumers: the instances of auth share each one, and a
restarted auth resumes where it stopped, so no fact goes unmetered."""

from __future__ import annotations

from faststream.nats import NatsBroker

from suanli_auth.domain import DeploymentFact, GpuHold, IntervalKind, JobFact, TokenUsage
from suanli_auth.metering.ledger import UsageLedger
from suanli_common.bus import Event, subscribe_events
from suanli_common.proto.suanli.v1 import events_pb2, scheduler_pb2

USAGE_RECORDED = "usage.recorded"
JOB_FACTS = "job.*"
DEPLOYMENT_FACTS = "deployment.*"
TOKENS_CONSUMER = "auth-usage-tokens"
JOBS_CONSUMER = "auth-usage-jobs"
DEPLOYMENTS_CONSUMER = "auth-usage-deployments"
_STATUS_PREFIX = "DEPLOYMENT_STATUS_"


def token_usage(event: Event[events_pb2.UsageRecorded]) -> TokenUsage:
    usage = event.data
    return TokenUsage(
        event_id=event.id,
        at=event.time,
        user_id=usage.user_id,
        api_key_id=usage.api_key_id,
        model=usage.model,
        deployment_id=usage.deployment_id,
        endpoint=usage.endpoint,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
    )


def job_fact(event: Event[events_pb2.JobStateChanged]) -> JobFact:
    job = event.data
    hold = GpuHold(
        kind=IntervalKind.job,
        resource_id=job.job_id,
        attempt=job.attempt,
        owner_id=job.owner_id,
        gpu_type=job.gpu_type,
        gpus=job.gpus,
        job_type=job.job_type,
    )
    return JobFact(fact=event.type.removeprefix("job."), at=event.time, hold=hold)


def deployment_fact(event: Event[events_pb2.DeploymentChanged]) -> DeploymentFact:
    deployment = event.data.deployment
    try:
        status = scheduler_pb2.DeploymentStatus.Name(deployment.status).removeprefix(_STATUS_PREFIX).lower()
    except ValueError:  # a status newer than this build: neither a start nor an end
        status = ""
    hold = GpuHold(
        kind=IntervalKind.deployment,
        resource_id=deployment.id,
        attempt=0,
        owner_id=deployment.owner_id,
        gpu_type=deployment.gpu_type,
        # 0 slots per replica on the wire means the default, one.
        gpus=(deployment.spec.gpu_count or 1) * len(deployment.node_ids),
        model=deployment.spec.served_model,
    )
    return DeploymentFact(status=status, at=event.time, hold=hold)


def subscribe_metering(broker: NatsBroker, ledger: UsageLedger) -> None:
    """Feeds the ledger (call before `broker.start()`)."""

    async def on_usage(event: Event[events_pb2.UsageRecorded]) -> None:
        await ledger.record_tokens(token_usage(event))

    async def on_job(event: Event[events_pb2.JobStateChanged]) -> None:
        await ledger.job_changed(job_fact(event))

    async def on_deployment(event: Event[events_pb2.DeploymentChanged]) -> None:
        await ledger.deployment_changed(deployment_fact(event))

    subscribe_events(broker, USAGE_RECORDED, events_pb2.UsageRecorded, on_usage, durable=TOKENS_CONSUMER)
    subscribe_events(broker, JOB_FACTS, events_pb2.JobStateChanged, on_job, durable=JOBS_CONSUMER)
    subscribe_events(
        broker, DEPLOYMENT_FACTS, events_pb2.DeploymentChanged, on_deployment, durable=DEPLOYMENTS_CONSUMER
    )
