"""What metering and quotas need from the scheduler: job facts that carry the slots an attempt
holds, and the GPU quotas auth publishes (`quota.set`) enforced at submit and placement."""

from __future__ import annotations

import asyncio

import pytest

from suanli_common.bus import EventPublisher
from suanli_common.errors import InvalidRequest
from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.proto.suanli.v1.events_pb2 import QuotaChanged
from suanli_scheduler.main import SchedulerApp
from suanli_scheduler.quota_events import gpu_type_of
from suanli_scheduler.repository import JobRepository

from .test_fine_tune_jobs import read_events
from .test_jobs import StartAgent, Stub, submit, wait_gpus, wait_status


async def test_job_facts_carry_the_slots_of_the_attempt(
    scheduler: SchedulerApp, stub: Stub, agents: StartAgent
) -> None:
    await agents("n1", "cpu:2")
    await wait_gpus(stub, 1)
    job = await submit(stub, "true", gpus_per_node=2)
    await wait_status(stub, job.id, pb.JOB_STATUS_SUCCEEDED)

    facts = await read_events(scheduler, "job.queued", "job.running", "job.succeeded")
    by_status = {fact.status: fact for fact in facts if fact.job_id == job.id}
    assert (by_status["queued"].gpu_type, by_status["queued"].gpus) == ("", 0)  # not placed yet
    assert (by_status["running"].gpu_type, by_status["running"].gpus) == ("cpu", 2)
    assert (by_status["succeeded"].gpu_type, by_status["succeeded"].gpus) == ("cpu", 2)


async def test_a_gpu_quota_set_in_auth_caps_the_user(
    scheduler: SchedulerApp, stub: Stub, agents: StartAgent
) -> None:
    await agents("n1", "cpu:2")
    await wait_gpus(stub, 1)
    publisher = EventPublisher(scheduler.broker, source="auth")
    await publisher.publish("quota.set", "capped", QuotaChanged(user_id="capped", resource="gpu:*", limit=1))
    # Quotas auth keeps for other services (tokens, storage) are not the scheduler's business.
    await publisher.publish(
        "quota.set", "capped", QuotaChanged(user_id="capped", resource="tokens_per_day", limit=0)
    )

    # The consumer applies the fact within moments; until then a probe asking for nothing
    # (0 GPUs is refused for itself) shows nothing about the quota, so probe with 2 GPUs.
    for _ in range(100):
        try:
            probe = await submit(stub, "true", owner="capped", gpus_per_node=2)
        except InvalidRequest as exc:
            assert "quota" in str(exc)
            break
        await wait_status(stub, probe.id, pb.JOB_STATUS_SUCCEEDED)
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the quota never reached the scheduler")
    one = await submit(stub, "true", owner="capped", gpus_per_node=1)  # within the quota
    await wait_status(stub, one.id, pb.JOB_STATUS_SUCCEEDED)


@pytest.mark.parametrize(
    ("resource", "gpu_type"),
    [("gpu:A100-80G", "A100-80G"), ("gpu:*", "*"), ("gpu:", None), ("tokens_per_day", None)],
)
def test_which_quotas_the_scheduler_enforces(resource: str, gpu_type: str | None) -> None:
    assert gpu_type_of(resource) == gpu_type


async def test_an_older_quota_fact_does_not_undo_a_newer_one(scheduler: SchedulerApp) -> None:
    await scheduler.service.set_quota("ada", "*", 1, version=2)
    await scheduler.service.set_quota("ada", "*", 8, version=1)  # redelivered late
    async with scheduler.db.session() as session:
        assert (await JobRepository(session).quotas()).total_limit("ada") == 1
    await scheduler.service.set_quota("ada", "*", 4, version=3)
    async with scheduler.db.session() as session:
        assert (await JobRepository(session).quotas()).total_limit("ada") == 4
