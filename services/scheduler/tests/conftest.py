"""Fixtures: a real scheduler (SQLite, NATS, in-process gRPC) and agents, in-process or as processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from suanli_common.grpc import make_channel
from suanli_common.proto.suanli.v1 import scheduler_pb2_grpc
from suanli_common.testing import NatsServer, free_port
from suanli_scheduler.main import SchedulerApp, start_scheduler
from suanli_scheduler.settings import SchedulerSettings
from suanli_trainer_agent.main import AgentApp, start_agent
from suanli_trainer_agent.settings import AgentSettings

FAST = {"heartbeat_interval_s": 0.2, "missed_heartbeats": 10, "offer_grace_s": 5.0, "runtime_minute_s": 1.0}


@pytest.fixture
async def scheduler(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[SchedulerApp]:
    settings = SchedulerSettings(
        home=tmp_path, nats_url=nats_server.url, scheduler_grpc_port=free_port(), runtime_grace_s=5.0, **FAST
    )
    app = await start_scheduler(settings)
    yield app
    await app.stop()


@pytest.fixture
async def stub(scheduler: SchedulerApp) -> AsyncIterator[scheduler_pb2_grpc.SchedulerServiceStub]:
    channel = make_channel(f"127.0.0.1:{scheduler.port}", timeout=10)
    yield scheduler_pb2_grpc.SchedulerServiceStub(channel)
    await channel.close()


@pytest.fixture
async def agents(
    nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[AgentApp]]]:
    started: list[AgentApp] = []

    async def start(node_id: str, slots: str = "cpu:1") -> AgentApp:
        settings = AgentSettings(
            home=tmp_path,
            nats_url=nats_server.url,
            node_id=node_id,
            agent_slots=slots,
            heartbeat_interval_s=0.2,
            stop_grace_s=2.0,
            container_runtime="",
            agent_port_range=f"{free_port()}-{free_port()}" if False else "29500-29999",
        )
        app = await start_agent(settings)
        started.append(app)
        return app

    yield start
    for app in started:
        await app.stop(give_back=False)
        await app.agent.shutdown()


def agent_env(nats_url: str, home: Path, node_id: str, slots: str = "cpu:1", port: int = 0) -> dict[str, str]:
    port = port or free_port()
    return {
        **os.environ,
        "SUANLI_NATS_URL": nats_url,
        "SUANLI_HOME": str(home),
        "SUANLI_NODE_ID": node_id,
        "SUANLI_AGENT_SLOTS": slots,
        "SUANLI_HEARTBEAT_INTERVAL_S": "0.2",
        "SUANLI_STOP_GRACE_S": "2",
        "SUANLI_CONTAINER_RUNTIME": "",
        "SUANLI_AGENT_PORT_RANGE": f"{port}-{port + 50}",
        "SUANLI_AGENT_METRICS_PORT": "0",  # many agents on one machine: no fixed port to share
        "SUANLI_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def agent_processes() -> Iterator[Callable[[dict[str, str]], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "suanli_trainer_agent"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
    for process in started:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
