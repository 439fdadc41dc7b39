"""The facts metering consumes, turned into ledger entries: usage.recorded (the gateway), job.*
and deployment.* (the scheduler). Durable consumers: the instances of auth share each one, and a
restarted auth resumes where it stopped, so no fact goes unmetered.

usage.recorded comes once per answered inference request, hundreds a second: it is taken in
batches, written one transaction per batch, without a span or middleware stack per message (which,
with a transaction per event, cost ~3 ms of CPU per request on a machine that also serves them)."""

from __future__ import annotations

from faststream.nats import NatsBroker
from nats.aio.msg import Msg

from suanli_auth.domain import DeploymentFact, GpuHold, IntervalKind, JobFact, TokenUsage
from suanli_auth.metering.ledger import UsageLedger
from suanli_common.bus import EVENTS, Event, consume_batches, decode_event, event_subject, subscribe_events
from suanli_common.logging import get_logger
from suanli_common.proto.suanli.v1 import events_pb2, scheduler_pb2

USAGE_RECORDED = "usage.recorded"
JOB_FACTS = "job.*"
DEPLOYMENT_FACTS = "deployment.*"
TOKENS_CONSUMER = "auth-usage-tokens"
JOBS_CONSUMER = "auth-usage-jobs"
DEPLOYMENTS_CONSUMER = "auth-usage-deployments"
_STATUS_PREFIX = "DEPLOYMENT_STATUS_"

log = get_logger(__name__)


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
    """Feeds the ledger the scheduler's facts (call before `broker.start()`); token usage comes
    through `consume_token_usage`."""

    async def on_job(event: Event[events_pb2.JobStateChanged]) -> None:
        await ledger.job_changed(job_fact(event))

    async def on_deployment(event: Event[events_pb2.DeploymentChanged]) -> None:
        await ledger.deployment_changed(deployment_fact(event))

    subscribe_events(broker, JOB_FACTS, events_pb2.JobStateChanged, on_job, durable=JOBS_CONSUMER)
    subscribe_events(
        broker, DEPLOYMENT_FACTS, events_pb2.DeploymentChanged, on_deployment, durable=DEPLOYMENTS_CONSUMER
    )


async def consume_token_usage(broker: NatsBroker, ledger: UsageLedger, *, max_batch: int = 256) -> None:
    """Feeds the ledger usage.recorded a batch at a time, each message acknowledged once the batch's
    transaction is committed (a failed batch is redelivered whole; the ledger skips what it already
    has). Runs until cancelled; start it once the broker is connected."""

    async def on_batch(messages: list[Msg]) -> list[BaseException | None]:
        usages: list[TokenUsage] = []
        for message in messages:
            try:
                usages.append(token_usage(decode_event(message.data, events_pb2.UsageRecorded)))
            except Exception:  # acknowledged: redelivering it cannot help
                log.warning("undecodable usage.recorded dropped", subject=message.subject)
        if usages:
            await ledger.record_token_batch(usages)
        return [None] * len(messages)

    await consume_batches(
        broker, event_subject(USAGE_RECORDED), EVENTS, TOKENS_CONSUMER, on_batch, max_batch=max_batch
    )
