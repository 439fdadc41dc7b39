"""Wires the auth process: database, NATS (outbox relay, metering consumers), prices seeded from
the settings, the gRPC server. Nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry

from suanli_auth.api import AuthServicer
from suanli_auth.mailer import make_mailer
from suanli_auth.metering import Metering
from suanli_auth.metering.balances import Balances
from suanli_auth.metering.events import consume_token_usage, subscribe_metering
from suanli_auth.metering.ledger import UsageLedger
from suanli_auth.metering.prices import PriceBook
from suanli_auth.metering.reports import UsageReports
from suanli_auth.models import OutboxRow
from suanli_auth.passwords import Passwords
from suanli_auth.service import AuthService, Clock, utc_now
from suanli_auth.settings import AuthSettings
from suanli_auth.signing import TokenSigner, load_or_create_secret, load_or_create_signing_key
from suanli_common.bus import EventPublisher, declare_streams, make_broker
from suanli_common.db import Database
from suanli_common.grpc import make_server
from suanli_common.logging import get_logger
from suanli_common.metrics import serving_metrics
from suanli_common.outbox import Outbox
from suanli_common.process import run_service
from suanli_common.proto.suanli.v1 import auth_pb2_grpc

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_auth"

log = get_logger(__name__)


@dataclass
class RunningAuth:
    service: AuthService
    metering: Metering
    server: grpc.aio.Server
    address: str


@contextlib.asynccontextmanager
async def running_auth(
    settings: AuthSettings, clock: Clock = utc_now, metrics: CollectorRegistry | None = None
) -> AsyncIterator[RunningAuth]:
    """The whole service, serving gRPC until the block ends (also what the tests start)."""
    db = Database(settings.resolved_database_url)
    broker = make_broker(settings.nats_url, service=settings.service_name, metrics=metrics)
    server: grpc.aio.Server | None = None
    relay: asyncio.Task[None] | None = None
    tokens: asyncio.Task[None] | None = None
    try:
        await db.migrate(MIGRATIONS, version_table=VERSION_TABLE)
        metering = Metering(
            ledger=UsageLedger(db),
            prices=PriceBook(db, settings.currency),
            reports=UsageReports(db, settings.currency, clock),
            balances=Balances(db, settings.currency, clock),
        )
        await metering.prices.seed(settings.seed_prices())
        await broker.connect()
        await declare_streams(broker, settings.nats_stream_replicas)
        subscribe_metering(broker, metering.ledger)  # subscribers come before start
        await broker.start()
        tokens = asyncio.create_task(consume_token_usage(broker, metering.ledger), name="auth-usage-tokens")
        outbox = Outbox(db, OutboxRow, EventPublisher(broker, source="auth"), source="auth")
        relay = asyncio.create_task(outbox.run(), name="auth-outbox-relay")
        service = AuthService(
            db,
            outbox,
            Passwords(),
            TokenSigner(
                load_or_create_signing_key(settings.resolved_signing_key_path),
                settings.token_issuer,
                settings.token_ttl_s,
            ),
            make_mailer(settings),
            load_or_create_secret(settings.resolved_email_code_secret_path),
            settings,
            clock,
        )
        server, _health = make_server(settings.auth_grpc_port, settings.auth_grpc_host, metrics=metrics)
        auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(service, metering), server)
        await server.start()
        address = f"{settings.auth_grpc_host}:{settings.auth_grpc_port}"
        log.info("auth serving", address=address)
        yield RunningAuth(service=service, metering=metering, server=server, address=address)
    finally:
        if server is not None:
            await server.stop(grace=2)
        for task in (relay, tokens):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await broker.stop()
        await db.close()


async def serve(settings: AuthSettings) -> None:
    metrics = CollectorRegistry()
    async with (
        running_auth(settings, metrics=metrics),
        serving_metrics(
            metrics, settings.auth_grpc_host, settings.auth_metrics_port, setting="SUANLI_AUTH_METRICS_PORT"
        ),
    ):
        await asyncio.Event().wait()  # until cancelled by SIGTERM / SIGINT


def main() -> None:
    settings = AuthSettings()
    run_service(settings, lambda: serve(settings))
