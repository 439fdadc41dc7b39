"""Wires the trainer agent process: discovery, NATS (command consumer, heartbeats), shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from faststream.nats import NatsBroker, NatsMessage, PullSub
from prometheus_client import CollectorRegistry

from suanli_common.bus import WORK, declare_streams, make_broker
from suanli_common.logging import get_logger
from suanli_common.metrics import serving_metrics
from suanli_common.process import run_service
from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_trainer_agent.agent import NodeAgent
from suanli_trainer_agent.discovery import container_runtime, discover
from suanli_trainer_agent.heartbeat import beat_forever
from suanli_trainer_agent.metrics import AgentCollector
from suanli_trainer_agent.protocol import command_durable, command_subject
from suanli_trainer_agent.settings import AgentSettings

log = get_logger(__name__)


@dataclass
class AgentApp:
    agent: NodeAgent
    broker: NatsBroker
    heartbeats: asyncio.Task[None]

    async def stop(self, *, give_back: bool = True) -> None:
        if give_back:
            await self.agent.shutdown()
        self.heartbeats.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.heartbeats
        await self.broker.stop()


async def start_agent(settings: AgentSettings, metrics: CollectorRegistry | None = None) -> AgentApp:
    pools = discover(settings.agent_slots)
    broker = make_broker(settings.nats_url, service=settings.service_name, metrics=metrics)
    agent = NodeAgent(settings, broker, pools, container_runtime(settings.container_runtime))

    async def on_command(message: NatsMessage) -> None:
        await agent.handle(pb.NodeCommand.FromString(message.body))

    broker.subscriber(
        command_subject(settings.node_id),
        stream=WORK,
        durable=command_durable(settings.node_id),
        pull_sub=PullSub(batch_size=16, timeout=1.0),
    )(on_command)
    await broker.connect()
    await declare_streams(broker, settings.nats_stream_replicas)
    await broker.start()
    heartbeats = asyncio.create_task(beat_forever(agent, broker, settings.heartbeat_interval_s))
    log.info("agent ready", node=settings.node_id, pools=[(p.gpu_type, p.count) for p in pools])
    return AgentApp(agent, broker, heartbeats)


async def serve(settings: AgentSettings) -> None:
    metrics = CollectorRegistry()
    app = await start_agent(settings, metrics)
    metrics.register(AgentCollector(app.agent))
    try:
        async with serving_metrics(
            metrics,
            settings.agent_metrics_host,
            settings.agent_metrics_port,
            setting="SUANLI_AGENT_METRICS_PORT",
        ):
            await asyncio.Event().wait()
    finally:
        await app.stop()


def main() -> None:
    settings = AgentSettings()
    run_service(settings, lambda: serve(settings))
