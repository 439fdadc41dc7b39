"""Wires the catalog process: database, artifact store, NATS (outbox relay, job-outputs
subscriber), the gRPC server, and the seed models built in the background once the server is
up. Nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry

from suanli_catalog.api import CatalogServicer
from suanli_catalog.events import subscribe_job_outputs
from suanli_catalog.files_service import FilesService
from suanli_catalog.job_outputs import JobOutputs
from suanli_catalog.models import OutboxRow
from suanli_catalog.models_service import ModelsService
from suanli_catalog.seed import MINILM, SMOLLM2, TINY, SeedModel, build_once
from suanli_catalog.settings import CatalogSettings
from suanli_catalog.storage import ArtifactStore, LocalStore, S3Store
from suanli_common.bus import EventPublisher, declare_streams, make_broker
from suanli_common.db import Database
from suanli_common.grpc import make_server
from suanli_common.logging import get_logger
from suanli_common.metrics import serving_metrics
from suanli_common.outbox import Outbox
from suanli_common.process import run_service
from suanli_common.proto.suanli.v1 import catalog_pb2_grpc

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_catalog"

log = get_logger(__name__)


@dataclass
class RunningCatalog:
    models: ModelsService
    files: FilesService
    server: grpc.aio.Server
    address: str
    seeding: asyncio.Task[None] | None = None
    store: ArtifactStore | None = field(default=None)


async def make_store(settings: CatalogSettings) -> ArtifactStore:
    if settings.s3_endpoint_url:
        store = S3Store(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=(
                settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
            ),
            prefix=settings.s3_prefix,
        )
        await store.ensure_bucket()
        return store
    return LocalStore(settings.resolved_artifacts_dir)


async def seed_models(models: ModelsService, models_dir: Path, seeds: Sequence[SeedModel]) -> None:
    """Builds (first start) or finds (later starts) each seed model, then marks it ready; the
    rows are `registering` meanwhile. The tiny model first: it takes seconds."""
    for seed in seeds:
        await models.begin_seed(seed.id, seed.source, is_default=seed.is_default, kind=seed.kind)
    for seed in seeds:
        try:
            folder = await build_once(seed, models_dir / seed.folder_name)
            await models.finish_seed(seed.id, folder)
            log.info("seed model ready", model=seed.id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("seed model failed", model=seed.id)
            await models.fail_seed(seed.id, str(exc))


@contextlib.asynccontextmanager
async def running_catalog(
    settings: CatalogSettings,
    seeds: Sequence[SeedModel] = (TINY, MINILM, SMOLLM2),
    metrics: CollectorRegistry | None = None,
) -> AsyncIterator[RunningCatalog]:
    """The whole service, serving gRPC until the block ends (also what the tests start)."""
    db = Database(settings.resolved_database_url)
    broker = make_broker(settings.nats_url, service=settings.service_name, metrics=metrics)
    server: grpc.aio.Server | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        await db.migrate(MIGRATIONS, version_table=VERSION_TABLE)
        await broker.connect()
        await declare_streams(broker, settings.nats_stream_replicas)
        outbox = Outbox(db, OutboxRow, EventPublisher(broker, source="catalog"), source="catalog")
        subscribe_job_outputs(broker, JobOutputs(db, outbox))  # subscribers come before start
        await broker.start()
        tasks.append(asyncio.create_task(outbox.run(), name="catalog-outbox-relay"))
        store = await make_store(settings)
        models = ModelsService(db, outbox)
        files = FilesService(
            db,
            outbox,
            store,
            models,
            max_upload_bytes=settings.max_upload_bytes,
            url_ttl_s=settings.artifact_url_ttl_s,
        )
        server, _health = make_server(settings.catalog_grpc_port, settings.catalog_grpc_host, metrics=metrics)
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server(CatalogServicer(models, files), server)
        await server.start()
        address = f"{settings.catalog_grpc_host}:{settings.catalog_grpc_port}"
        log.info("catalog serving", address=address)
        running = RunningCatalog(models=models, files=files, server=server, address=address, store=store)
        if settings.seed_models and seeds:
            running.seeding = asyncio.create_task(
                seed_models(models, settings.resolved_models_dir, seeds), name="catalog-seed-models"
            )
            tasks.append(running.seeding)
        yield running
    finally:
        if server is not None:
            await server.stop(grace=2)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await broker.stop()
        await db.close()


async def serve(settings: CatalogSettings) -> None:
    metrics = CollectorRegistry()
    async with (
        running_catalog(settings, metrics=metrics),
        serving_metrics(
            metrics,
            settings.catalog_grpc_host,
            settings.catalog_metrics_port,
            setting="SUANLI_CATALOG_METRICS_PORT",
        ),
    ):
        await asyncio.Event().wait()  # until cancelled by SIGTERM / SIGINT


def main() -> None:
    settings = CatalogSettings()
    run_service(settings, lambda: serve(settings))
