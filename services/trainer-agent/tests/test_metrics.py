"""The agent's Prometheus collector over a real agent and nats-server: its slots and live attempts
are what the agent's heartbeat says."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.testing import NatsServer
from suanli_trainer_agent.main import AgentApp, start_agent
from suanli_trainer_agent.metrics import AgentCollector
from suanli_trainer_agent.settings import AgentSettings


@pytest.fixture
async def agent(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[AgentApp]:
    settings = AgentSettings(
        home=tmp_path,
        nats_url=nats_server.url,
        node_id="node-m",
        agent_slots="cpu:2",
        stop_grace_s=2.0,
        container_runtime="",
    )
    app = await start_agent(settings)
    yield app
    await app.stop()


def offer(job_id: str, command: str) -> pb.NodeCommand:
    return pb.NodeCommand(
        offer=pb.WorkOffer(
            job_id=job_id,
            attempt=1,
            lease_id=f"lease-{job_id}",
            gpu_type="cpu",
            nnodes=1,
            node_rank=0,
            master_addr="127.0.0.1",
            master_port=29500,
            spec=pb.JobSpec(name=job_id, command=command, nodes=1, gpus_per_node=1, gpu_type="cpu"),
        )
    )


async def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"never true: {what}"
        await asyncio.sleep(0.05)


async def test_slots_and_running_jobs_follow_the_agents_attempts(agent: AgentApp) -> None:
    registry = CollectorRegistry()
    registry.register(AgentCollector(agent.agent))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("suanli_agent_slots", gpu_type="cpu", state="free") == 2
    assert value("suanli_agent_slots", gpu_type="cpu", state="used") == 0
    assert value("suanli_agent_running_jobs") == 0

    await agent.agent.handle(offer("job_m", "sleep 60"))
    assert value("suanli_agent_slots", gpu_type="cpu", state="used") == 1
    assert value("suanli_agent_slots", gpu_type="cpu", state="free") == 1
    assert value("suanli_agent_running_jobs") == 1

    await agent.agent.handle(pb.NodeCommand(stop=pb.StopWork(job_id="job_m", attempt=1)))
    await eventually(lambda: value("suanli_agent_running_jobs") == 0, "the stopped attempt ended")
    assert value("suanli_agent_slots", gpu_type="cpu", state="free") == 2
