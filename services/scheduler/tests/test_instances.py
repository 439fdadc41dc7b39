"""Instances end to end in one process: the real scheduler (SQLite, NATS, gRPC) and a real agent that
starts real TensorBoard servers. CPU reserved while an instance runs and given back when it stops,
stop and start over the same storage, delete removing it, and the refusals of bad requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from suanli_common.errors import Conflict, InvalidRequest, NotFound, SuanliError
from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.proto.suanli.v1.scheduler_pb2_grpc import SchedulerServiceStub
from suanli_common.testing import NatsServer
from suanli_scheduler.main import SchedulerApp
from suanli_trainer_agent.main import AgentApp, start_agent
from suanli_trainer_agent.settings import AgentSettings

from .test_jobs import submit, wait_gpus, wait_status

Stub = SchedulerServiceStub
OWNER = "user_1"


@pytest.fixture
async def agent(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[AgentApp]:
    """One node of two cores and 4 GB that cannot run LLaMA-Factory (its command is not there)."""
    settings = AgentSettings(
        home=tmp_path,
        nats_url=nats_server.url,
        node_id="n1",
        agent_slots="cpu:1",
        agent_cpus=2,
        agent_memory_gb=4,
        heartbeat_interval_s=0.2,
        stop_grace_s=5.0,
        container_runtime="",
        llamafactory_cli=str(tmp_path / "no-such-venv" / "llamafactory-cli"),
    )
    app = await start_agent(settings)
    yield app
    await app.stop()


def tensorboard(name: str, job_id: str, cpu_millis: int = 1500, **changes: object) -> pb.InstanceSpec:
    fields: dict[str, object] = {
        "name": name,
        "kind": "tensorboard",
        "cpu_millis": cpu_millis,
        "memory_mb": 1024,
        "mounts": [pb.InstanceMount(kind="job", id=job_id, name=job_id)],
    }
    fields.update(changes)
    return pb.InstanceSpec(**fields)  # type: ignore[arg-type]


async def create(stub: Stub, spec: pb.InstanceSpec, owner: str = OWNER) -> pb.Instance:
    instance: pb.Instance = await stub.CreateInstance(pb.CreateInstanceRequest(owner_id=owner, spec=spec))
    return instance


async def wait_instance(
    stub: Stub, instance_id: str, status: int, reason: str = "", timeout: float = 120
) -> pb.Instance:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await stub.GetInstance(pb.GetInstanceRequest(caller_id=OWNER, instance_id=instance_id))
        if found.status == status and reason in found.status_reason:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"instance stuck in {pb.InstanceStatus.Name(found.status)}: {found.status_reason}"
            )
        await asyncio.sleep(0.2)


async def refused(call: object, error: type[SuanliError]) -> str:
    """The message of the error the call raises (the channel's interceptor raises the scheduler's)."""
    with pytest.raises(error) as caught:
        await call  # type: ignore[misc]
    return caught.value.message


async def test_an_instance_reserves_cpu_while_it_runs_and_keeps_its_storage_across_stop_and_start(
    scheduler: SchedulerApp, stub: Stub, agent: AgentApp
) -> None:
    await wait_gpus(stub, 1)
    job = await submit(stub, "echo done", owner=OWNER)
    await wait_status(stub, job.id, pb.JOB_STATUS_SUCCEEDED)

    first = await create(stub, tensorboard("board", job.id))
    assert first.base_url == f"/instances/{first.id}/" and first.job_id
    assert first.spec.mounts[0].source.endswith(f"/volumes/{job.id}")  # the scheduler resolved it
    running = await wait_instance(stub, first.id, pb.INSTANCE_STATUS_RUNNING)
    assert running.node_id == "n1" and running.endpoint.startswith("127.0.0.1:")
    async with httpx.AsyncClient(timeout=10) as http:
        runs = await http.get(f"http://{running.endpoint}{running.base_url}data/runs")
    assert runs.status_code == 200

    # 1.5 of the node's 2 cores are held: a second instance of one core waits for them.
    second = await create(stub, tensorboard("board-2", job.id, cpu_millis=1000))
    await wait_instance(stub, second.id, pb.INSTANCE_STATUS_QUEUED, reason="1 free CPU core(s)")

    workspace = Path(running.storage_path) / "work"
    (workspace / "notes.txt").write_text("kept")
    stopped = await stub.StopInstance(pb.StopInstanceRequest(caller_id=OWNER, instance_id=first.id))
    assert stopped.status in (pb.INSTANCE_STATUS_STOPPING, pb.INSTANCE_STATUS_STOPPED)
    await wait_instance(stub, first.id, pb.INSTANCE_STATUS_STOPPED)
    await wait_instance(stub, second.id, pb.INSTANCE_STATUS_RUNNING)  # the freed core went to it

    restarted = await stub.StartInstance(pb.StartInstanceRequest(caller_id=OWNER, instance_id=first.id))
    assert restarted.job_id != first.job_id  # a new run of the same instance
    await stub.DeleteInstance(pb.DeleteInstanceRequest(caller_id=OWNER, instance_id=second.id))
    again = await wait_instance(stub, first.id, pb.INSTANCE_STATUS_RUNNING)
    assert (workspace / "notes.txt").read_text() == "kept"
    listed = await stub.ListInstances(pb.ListInstancesRequest(caller_id=OWNER))
    assert [i.id for i in listed.instances] == [first.id]

    await stub.DeleteInstance(pb.DeleteInstanceRequest(caller_id=OWNER, instance_id=first.id))
    await refused(
        stub.GetInstance(pb.GetInstanceRequest(caller_id=OWNER, instance_id=first.id)),
        NotFound,
    )
    for _ in range(100):  # the agent removes the storage once the server is gone
        if not await asyncio.to_thread(Path(again.storage_path).exists):
            break
        await asyncio.sleep(0.2)
    assert not await asyncio.to_thread(Path(again.storage_path).exists)
    # The slot ledger holds nothing of theirs any more.
    assert scheduler.service.ledger.capacities()[0].free_cpu_millis == 2000


async def test_bad_instances_are_refused_with_the_reason(
    scheduler: SchedulerApp, stub: Stub, agent: AgentApp
) -> None:
    await wait_gpus(stub, 1)
    job = await submit(stub, "echo done", owner=OWNER)
    await wait_status(stub, job.id, pb.JOB_STATUS_SUCCEEDED)
    mine = await create(stub, tensorboard("board", job.id, cpu_millis=500))

    clash = await refused(create(stub, tensorboard("board", job.id)), Conflict)
    assert "already have an instance named 'board'" in clash
    too_big = await refused(create(stub, tensorboard("big", job.id, cpu_millis=64000)), InvalidRequest)
    assert "cpu=64 is more than any node has (largest: 2 cores)" in too_big
    memory = await refused(create(stub, tensorboard("big", job.id, memory_mb=64 * 1024)), InvalidRequest)
    assert "memory_gb=64" in memory
    gpus = await refused(create(stub, tensorboard("big", job.id, gpus=4)), InvalidRequest)
    assert "gpus=4 is more than any node has" in gpus
    llamafactory = pb.InstanceSpec(name="lf", kind="llamafactory", cpu_millis=1000, memory_mb=1024)
    why = await refused(create(stub, llamafactory), InvalidRequest)
    assert "the llamafactory package is not installed on node n1" in why
    # Another user may neither mount this user's job nor see this user's instance.
    foreign = await refused(create(stub, tensorboard("theirs", job.id), owner="user_2"), InvalidRequest)
    assert f"the job {job.id!r} does not exist or is not yours" in foreign
    for call in (
        stub.GetInstance(pb.GetInstanceRequest(caller_id="user_2", instance_id=mine.id)),
        stub.StopInstance(pb.StopInstanceRequest(caller_id="user_2", instance_id=mine.id)),
        stub.DeleteInstance(pb.DeleteInstanceRequest(caller_id="user_2", instance_id=mine.id)),
    ):
        await refused(call, NotFound)
    no_logs = pb.InstanceSpec(name="empty", kind="tensorboard", cpu_millis=1000, memory_mb=1024)
    assert "mount at least one" in await refused(create(stub, no_logs), InvalidRequest)
    await stub.DeleteInstance(pb.DeleteInstanceRequest(caller_id=OWNER, instance_id=mine.id))
    # A deleted instance's name is free again.
    assert (await create(stub, tensorboard("board", job.id, cpu_millis=500))).spec.name == "board"
