"""The scheduler's Prometheus collector against the real scheduler and a real agent: slots, the
queue and jobs by state are what the ledger, the waiting queue and the tables say; the state
lock's counters are what it was waited for and held."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, generate_latest

from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.proto.suanli.v1.scheduler_pb2_grpc import SchedulerServiceStub
from suanli_scheduler.main import SchedulerApp
from suanli_scheduler.state import MeasuredLock
from suanli_trainer_agent.main import AgentApp

Stub = SchedulerServiceStub
StartAgent = Callable[..., Awaitable[AgentApp]]


async def submit(stub: Stub, cmd: str, gpus: int) -> pb.Job:
    spec = pb.JobSpec(name="m", job_type=pb.JOB_TYPE_PYTORCH, command=cmd, nodes=1, gpus_per_node=gpus)
    return await stub.SubmitJob(pb.SubmitJobRequest(owner_id="user_1", spec=spec))


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never true: {what}")
        await asyncio.sleep(0.1)


async def test_slots_queue_and_jobs_by_state_come_from_the_schedulers_state(
    scheduler: SchedulerApp, stub: Stub, agents: StartAgent
) -> None:
    registry = CollectorRegistry()
    registry.register(scheduler.collector)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    await agents("n1", slots="cpu:2")

    async def node_seen() -> bool:
        return value("suanli_gpu_slots", node="n1", gpu_type="cpu", state="free") == 2

    await eventually(node_seen, "the node's two free slots")
    assert value("suanli_gpu_slots", node="n1", gpu_type="cpu", state="used") == 0

    running = await submit(stub, "sleep 60", gpus=1)
    waiting = await submit(stub, "true", gpus=2)  # one slot is taken: it waits for both

    async def one_running_one_queued() -> bool:
        await scheduler.collector.refresh()
        return value("suanli_jobs", kind="pytorch", state="running") == 1 and (
            value("suanli_jobs", kind="pytorch", state="queued") == 1
        )

    await eventually(one_running_one_queued, "one job running and one queued")
    assert value("suanli_gpu_slots", node="n1", gpu_type="cpu", state="used") == 1
    assert value("suanli_gpu_slots", node="n1", gpu_type="cpu", state="free") == 1
    assert value("suanli_queue_depth", kind="pytorch") == 1
    # Kinds and states with nothing in them are there, at 0.
    assert value("suanli_queue_depth", kind="deployment") == 0
    assert value("suanli_jobs", kind="fine_tune", state="succeeded") == 0

    await stub.CancelJob(pb.CancelJobRequest(job_id=running.id))

    async def the_waiting_one_ran() -> bool:
        await scheduler.collector.refresh()
        return value("suanli_jobs", kind="pytorch", state="succeeded") == 1

    await eventually(the_waiting_one_ran, "the queued job placed once slots freed, and succeeded")
    assert value("suanli_jobs", kind="pytorch", state="cancelled") == 1
    assert value("suanli_jobs", kind="pytorch", state="queued") == 0
    assert value("suanli_queue_depth", kind="pytorch") == 0
    assert (await stub.GetJob(pb.GetJobRequest(job_id=waiting.id))).status == pb.JOB_STATUS_SUCCEEDED
    # Placements and reports ran under the state lock, and its counters say so.
    assert (value("suanli_scheduler_state_lock_acquisitions_total") or 0) > 0
    assert (value("suanli_scheduler_state_lock_held_seconds_total") or 0) > 0
    # And it renders as Prometheus text.
    text = generate_latest(registry).decode()
    assert 'suanli_gpu_slots{gpu_type="cpu",node="n1",state="free"}' in text


async def test_the_state_lock_counts_how_long_it_was_waited_for_and_held() -> None:
    now = 0.0
    lock = MeasuredLock(clock=lambda: now)
    async with lock:  # taken at 0
        now = 2.0
        waiter = asyncio.create_task(lock.acquire())
        await asyncio.sleep(0)  # it asks at 2 and queues behind the holder
        now = 3.0
    await waiter  # released and taken at 3
    now = 3.5
    lock.release()
    assert lock.acquisitions == 2
    assert lock.held_s == 3.5  # 0 -> 3, then 3 -> 3.5
    assert lock.waited_s == 1.0
