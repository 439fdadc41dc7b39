"""Jobs end to end in one process: the real scheduler (SQLite, NATS, gRPC) and real agents that
run real subprocesses."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from suanli_common.errors import InvalidRequest
from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.proto.suanli.v1.scheduler_pb2_grpc import SchedulerServiceStub
from suanli_scheduler.domain import JobStatus
from suanli_scheduler.main import SchedulerApp
from suanli_scheduler.service import AttemptReport
from suanli_trainer_agent.main import AgentApp

Stub = SchedulerServiceStub
StartAgent = Callable[..., Awaitable[AgentApp]]


async def submit(stub: Stub, cmd: str, *, owner: str = "user_1", **spec: object) -> pb.Job:
    fields = {"name": "t", "job_type": pb.JOB_TYPE_PYTORCH, "command": cmd, "nodes": 1, "gpus_per_node": 1}
    fields.update(spec)
    return await stub.SubmitJob(pb.SubmitJobRequest(owner_id=owner, spec=pb.JobSpec(**fields)))  # type: ignore[arg-type]


async def wait_status(stub: Stub, job_id: str, *statuses: int, timeout: float = 30) -> pb.Job:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = await stub.GetJob(pb.GetJobRequest(job_id=job_id))
        if job.status in statuses:
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job stuck in {pb.JobStatus.Name(job.status)}: {job.status_reason}")
        await asyncio.sleep(0.1)


async def wait_gpus(stub: Stub, count: int) -> None:
    for _ in range(100):
        if len((await stub.ListGpus(pb.ListGpusRequest())).gpus) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("agents never showed up")


async def test_a_job_runs_and_its_logs_stay_in_the_logs_stream(
    scheduler: SchedulerApp, stub: Stub, agents: StartAgent
) -> None:
    agent = await agents("n1")
    await wait_gpus(stub, 1)
    job = await submit(stub, "echo hello from $RANK of $WORLD_SIZE; echo oops >&2", model_save_path="out")
    again = await stub.SubmitJob(
        pb.SubmitJobRequest(owner_id="user_1", client_request_id="r1", spec=job.spec)
    )
    same = await stub.SubmitJob(pb.SubmitJobRequest(owner_id="user_1", client_request_id="r1", spec=job.spec))
    assert again.id == same.id != job.id  # idempotent on client_request_id
    done = await wait_status(stub, job.id, pb.JOB_STATUS_SUCCEEDED)
    assert done.node_ids == ["n1"] and done.attempt == 1 and done.output_path.endswith(f"{job.id}/out")
    await wait_status(stub, again.id, pb.JOB_STATUS_SUCCEEDED)
    lines = await read_logs(agent, job.id)
    assert "hello from 0 of 1" in lines and "oops" in lines


async def read_logs(agent: AgentApp, job_id: str) -> list[str]:
    js = agent.broker.config.connection_state.stream
    sub = await js.subscribe(f"logs.job.{job_id}.>", ordered_consumer=True)
    lines = []
    try:
        while True:
            msg = await sub.next_msg(timeout=1)
            lines.append(msg.data.decode())
    except Exception:
        pass
    await sub.unsubscribe()
    return lines


async def test_bad_requests_are_refused_at_submit(
    scheduler: SchedulerApp, stub: Stub, agents: StartAgent
) -> None:
    await agents("n1", "cpu:2")
    await wait_gpus(stub, 1)
    cases = [
        ({"gpus_per_node": 0}, "gpus_per_node"),
        ({"gpus_per_node": 3}, "gpus_per_node"),
        ({"gpu_type": "H100"}, "gpu_type"),
        ({"command": ""}, "command"),
        ({"ckpt_path": "../x"}, "ckpt_path"),
        ({"max_runtime_minutes": 0}, "max_runtime_minutes"),
        ({"image": "busybox"}, "image"),
    ]
    for changes, param in cases:
        with pytest.raises(InvalidRequest) as exc:
            await submit(stub, "true", **changes)
        assert exc.value.param == param, changes


async def test_priority_fifo_quota_and_why_a_job_waits(
    scheduler: SchedulerApp, stub: Stub, agents: StartAgent
) -> None:
    await agents("n1", "cpu:1")
    await wait_gpus(stub, 1)
    await scheduler.service.set_quota("capped", "*", 1)
    with pytest.raises(InvalidRequest):
        await submit(stub, "true", owner="capped", nodes=1, gpus_per_node=2)
    blocker = await submit(stub, "sleep 1")
    await wait_status(stub, blocker.id, pb.JOB_STATUS_RUNNING)
    low = await submit(stub, "true", priority=0)
    high = await submit(stub, "true", priority=5)
    await asyncio.sleep(0.5)
    waiting = await stub.GetJob(pb.GetJobRequest(job_id=low.id))
    assert waiting.status == pb.JOB_STATUS_QUEUED and "waiting" in waiting.status_reason
    done_high = await wait_status(stub, high.id, pb.JOB_STATUS_SUCCEEDED)
    done_low = await wait_status(stub, low.id, pb.JOB_STATUS_SUCCEEDED)
    assert done_high.started_at.ToDatetime() <= done_low.started_at.ToDatetime()


async def test_cancel_kills_the_process_group(
    scheduler: SchedulerApp, stub: Stub, agents: StartAgent, tmp_path: Path
) -> None:
    agent = await agents("n1")
    await wait_gpus(stub, 1)
    pidfile = tmp_path / "child.pid"
    job = await submit(stub, f"sleep 300 & echo $! > {pidfile}; wait")
    await wait_status(stub, job.id, pb.JOB_STATUS_RUNNING)
    for _ in range(50):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.1)
    child = int(pidfile.read_text())
    cancelled = await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))
    assert cancelled.status == pb.JOB_STATUS_CANCELLED
    for _ in range(60):
        if not _alive(child) and not agent.agent.attempts[job.id].live:
            break
        await asyncio.sleep(0.1)
    assert not _alive(child), "the job's grandchild outlived the cancel"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:  # gone between the two looks
        return False


async def test_max_run_time_ends_timed_out(scheduler: SchedulerApp, stub: Stub, agents: StartAgent) -> None:
    await agents("n1")
    await wait_gpus(stub, 1)
    job = await submit(stub, "sleep 60", max_runtime_minutes=1)  # a "minute" is 1 s in these tests
    done = await wait_status(stub, job.id, pb.JOB_STATUS_TIMED_OUT, timeout=20)
    assert "max run time" in done.status_reason


async def test_lost_lease_requeues_and_stale_reports_are_ignored(scheduler: SchedulerApp, stub: Stub) -> None:
    service = scheduler.service
    from suanli_scheduler.ledger import NodeInventory, SlotPool
    from suanli_scheduler.service import Heartbeat

    # A node that beats once and then goes silent: its offers are never taken.
    await service.on_heartbeat(Heartbeat(NodeInventory("ghost", "127.0.0.1", (SlotPool("cpu", 1),))))
    job = await submit(stub, "true")
    await wait_for(lambda: stub.GetJob(pb.GetJobRequest(job_id=job.id)), lambda j: bool(j.node_ids))
    lease = service.leases.get(placed_lease(service, job.id))
    assert lease is not None
    # An agent's report for an attempt that is not the current one changes nothing.
    await service.on_report(AttemptReport("ghost", job.id, 7, "lease_other", JobStatus.running))
    assert (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).status == pb.JOB_STATUS_QUEUED
    requeued = await wait_for(
        lambda: stub.GetJob(pb.GetJobRequest(job_id=job.id)), lambda j: j.attempt == 2, timeout=15
    )
    assert requeued.status == pb.JOB_STATUS_QUEUED and not requeued.node_ids  # no live node now
    # The old attempt's late report is stale now.
    await service.on_report(AttemptReport("ghost", job.id, 1, lease.lease_id, JobStatus.succeeded))
    assert (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).status == pb.JOB_STATUS_QUEUED


def placed_lease(service: object, job_id: str) -> str:
    for lease in service.leases.all():  # type: ignore[attr-defined]
        if lease.job_id == job_id:
            return str(lease.lease_id)
    return ""


async def wait_for(
    fetch: Callable[[], Awaitable[pb.Job]], ok: Callable[[pb.Job], bool], timeout: float = 10
) -> pb.Job:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = await fetch()
        if ok(job):
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met: {job}")
        await asyncio.sleep(0.1)
