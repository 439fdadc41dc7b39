"""Wires the scheduler process: database, NATS (streams, subscribers, outbox relay), the placement
loop and the gRPC API."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from faststream.nats import NatsBroker
from prometheus_client import CollectorRegistry
from sqlalchemy import event

from suanli_common.bus import EventPublisher, declare_streams, make_broker
from suanli_common.db import Database
from suanli_common.grpc import make_server
from suanli_common.logging import get_logger
from suanli_common.metrics import serving_metrics
from suanli_common.outbox import Outbox
from suanli_common.process import run_service
from suanli_common.proto.suanli.v1 import scheduler_pb2_grpc
from suanli_scheduler.api import SchedulerServicer
from suanli_scheduler.events import DeploymentEvents, JobEvents
from suanli_scheduler.metrics import SchedulerCollector
from suanli_scheduler.models import OutboxRow
from suanli_scheduler.protocol import NatsNodeCommands, consume_reports, subscribe_heartbeats
from suanli_scheduler.quota_events import subscribe_quotas
from suanli_scheduler.service import JobService
from suanli_scheduler.settings import SchedulerSettings

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_scheduler"
log = get_logger(__name__)


@dataclass
class SchedulerApp:
    """The running pieces, so tests can start the real process in-process and poke at it."""

    settings: SchedulerSettings
    db: Database
    broker: NatsBroker
    service: JobService
    server: grpc.aio.Server
    port: int
    tasks: list[asyncio.Task[None]]
    collector: SchedulerCollector

    async def stop(self) -> None:
        await self.server.stop(grace=1)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.broker.stop()
        await self.service.close()
        await self.db.close()


def _relaxed_sync(dbapi_conn: Any, _: Any) -> None:
    # Under WAL, synchronous=NORMAL syncs at checkpoints instead of at every commit: a commit
    # survives a crash of the process, though the last ones may be lost if the machine loses
    # power. Agents re-report phases through heartbeats and JetStream redelivers unacked
    # reports, so that window is recoverable; an fsync per placement pass and report batch is
    # what bounded placements per second on disk.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


async def start_scheduler(
    settings: SchedulerSettings, metrics: CollectorRegistry | None = None
) -> SchedulerApp:
    # One SQLite connection: placements, reports, submits and the outbox relay all write, at
    # hundreds of transactions a second when a queue drains (see Database).
    db = Database(settings.resolved_database_url, sqlite_connections=1)
    if db.engine.dialect.name == "sqlite":
        event.listen(db.engine.sync_engine, "connect", _relaxed_sync)
    await db.migrate(MIGRATIONS, VERSION_TABLE)
    broker = make_broker(settings.nats_url, service=settings.service_name, metrics=metrics)
    # Pipelined: the scheduler relays three facts per job, by the thousand when a queue drains.
    publisher = EventPublisher(broker, settings.service_name, pipelined=True)
    outbox = Outbox(db, OutboxRow, publisher, settings.service_name)
    events = JobEvents(outbox, str(settings.resolved_volumes_dir))
    service = JobService(
        db, events, NatsNodeCommands(broker), settings, deployment_events=DeploymentEvents(outbox)
    )
    await service.restore()
    subscribe_quotas(broker, service)
    await broker.connect()
    await declare_streams(broker, settings.nats_stream_replicas)
    await broker.start()
    await subscribe_heartbeats(broker, service)
    server, _health = make_server(settings.scheduler_grpc_port, settings.scheduler_grpc_host, metrics=metrics)
    scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(
        SchedulerServicer(service, str(settings.resolved_volumes_dir)), server
    )
    await server.start()
    tasks = [
        asyncio.create_task(outbox.run()),
        asyncio.create_task(service.run()),
        asyncio.create_task(consume_reports(broker, service)),
    ]
    collector = SchedulerCollector(service, db)
    if metrics is not None:
        metrics.register(collector)
    log.info("scheduler ready", grpc_port=settings.scheduler_grpc_port)
    return SchedulerApp(settings, db, broker, service, server, settings.scheduler_grpc_port, tasks, collector)


async def serve(settings: SchedulerSettings) -> None:
    metrics = CollectorRegistry()
    app = await start_scheduler(settings, metrics)
    try:
        async with serving_metrics(
            metrics,
            settings.scheduler_grpc_host,
            settings.scheduler_metrics_port,
            setting="SUANLI_SCHEDULER_METRICS_PORT",
            refresh=[app.collector.refresh],
        ):
            await app.server.wait_for_termination()
    finally:
        await app.stop()


def main() -> None:
    settings = SchedulerSettings()
    run_service(settings, lambda: serve(settings))
