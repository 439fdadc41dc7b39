"""A job continues the trace of the request that submitted it: the job row keeps it, the offers
carry it to the agent, the agent's reports bring it back, and the job's facts are published in it."""

from __future__ import annotations

from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_scheduler.main import SchedulerApp
from suanli_scheduler.models import JobRow

from .test_jobs import StartAgent, Stub, wait_gpus, wait_status

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


async def test_the_offer_carries_the_submitters_trace(
    scheduler: SchedulerApp, stub: Stub, agents: StartAgent
) -> None:
    agent = await agents("n1")
    await wait_gpus(stub, 1)
    spec = pb.JobSpec(name="t", job_type=pb.JOB_TYPE_PYTORCH, command="true", nodes=1, gpus_per_node=1)
    job = await stub.SubmitJob(
        pb.SubmitJobRequest(owner_id="user_1", spec=spec), metadata=(("traceparent", TRACEPARENT),)
    )
    await wait_status(stub, job.id, pb.JOB_STATUS_SUCCEEDED)

    async with scheduler.db.session() as session:
        row = await session.get(JobRow, job.id)
    assert row is not None and TRACE_ID in row.traceparent

    # The agent's reports continue the trace, so the facts the scheduler publishes from them do too.
    js = agent.broker.config.connection_state.stream
    sub = await js.subscribe("events.job.succeeded", ordered_consumer=True)
    try:
        msg = await sub.next_msg(timeout=10)
    finally:
        await sub.unsubscribe()
    assert TRACE_ID in (msg.headers or {}).get("traceparent", ""), msg.headers
