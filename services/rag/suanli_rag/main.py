"""Wires the rag process: database, Qdrant, the embedding model, NATS (outbox relay, ingestion
worker), and the gRPC server. In embedded mode Qdrant's folder is locked by one process, so the
API and the ingestion worker live here together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from prometheus_client import CollectorRegistry
from qdrant_client import QdrantClient

from suanli_common.bus import EventPublisher, declare_streams, make_broker
from suanli_common.db import Database
from suanli_common.grpc import make_channel, make_server
from suanli_common.logging import get_logger
from suanli_common.metrics import serving_metrics
from suanli_common.outbox import Outbox
from suanli_common.process import run_service
from suanli_common.proto.suanli.v1 import catalog_pb2_grpc, rag_pb2_grpc, scheduler_pb2_grpc
from suanli_rag import catalog_files, deployed_models
from suanli_rag.api import RagServicer
from suanli_rag.catalog_files import CatalogFiles, GrpcCatalogFiles
from suanli_rag.chunking import ChunkingConfig
from suanli_rag.deployed_models import DeployedModels
from suanli_rag.embeddings import Embedders, LocalEmbedder, packaged_model_dir
from suanli_rag.events import IngestionWorker
from suanli_rag.index import ChunkIndex
from suanli_rag.ingestion import Ingestion
from suanli_rag.knowledge_bases import KnowledgeBases, Limits
from suanli_rag.metrics import RagMetrics
from suanli_rag.models import OutboxRow
from suanli_rag.retrieval import Retrieval
from suanli_rag.settings import RagSettings
from suanli_rag.sparse import Bm25

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_rag"

log = get_logger(__name__)


@dataclass
class RunningRag:
    db: Database
    knowledge_bases: KnowledgeBases
    retrieval: Retrieval
    ingestion: Ingestion
    index: ChunkIndex
    address: str
    metrics: RagMetrics
    registry: CollectorRegistry


def chunk_index(settings: RagSettings) -> ChunkIndex:
    if settings.qdrant_url:
        return ChunkIndex(
            QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key), embedded=False
        )
    return ChunkIndex(QdrantClient(path=str(settings.resolved_qdrant_path)), embedded=True)


@contextlib.asynccontextmanager
async def running_rag(
    settings: RagSettings, catalog: CatalogFiles | None = None, metrics: CollectorRegistry | None = None
) -> AsyncIterator[RunningRag]:
    """The whole service, serving gRPC and ingesting until the block ends (also what tests start;
    they may hand in the catalog's files). Its metrics go to `metrics`, or to a registry of its own."""
    db = Database(settings.resolved_database_url)
    registry = metrics if metrics is not None else CollectorRegistry()
    broker = make_broker(settings.nats_url, service=settings.service_name, metrics=registry)
    rag_metrics = RagMetrics(registry, db)
    catalog_channel = make_channel(
        settings.catalog_address,
        timeout=settings.grpc_timeout_s,
        service=catalog_files.CATALOG_SERVICE,
        idempotent_methods=catalog_files.IDEMPOTENT_METHODS,
    )
    scheduler_channel = make_channel(
        settings.scheduler_address,
        timeout=settings.grpc_timeout_s,
        service=deployed_models.SCHEDULER_SERVICE,
        idempotent_methods=deployed_models.IDEMPOTENT_METHODS,
    )
    http = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=5.0))
    index = chunk_index(settings)
    server: grpc.aio.Server | None = None
    relay: asyncio.Task[None] | None = None
    ingesting: asyncio.Task[None] | None = None
    try:
        await db.migrate(MIGRATIONS, version_table=VERSION_TABLE)
        model_dir = settings.embedding_model_dir or packaged_model_dir()
        packaged = await asyncio.to_thread(
            LocalEmbedder,
            model_dir,
            batch_size=settings.embedding_batch_size,
            threads=settings.embedding_threads,
        )
        deployed = DeployedModels(scheduler_pb2_grpc.SchedulerServiceStub(scheduler_channel))
        embedders = Embedders(packaged, deployed.endpoint, http)
        catalog = catalog or GrpcCatalogFiles(catalog_pb2_grpc.CatalogServiceStub(catalog_channel))
        await broker.connect()
        await declare_streams(broker, settings.nats_stream_replicas)
        outbox = Outbox(db, OutboxRow, EventPublisher(broker, source="rag"), source="rag")
        ingestion = Ingestion(
            db,
            outbox,
            catalog,
            index,
            embedders,
            count_tokens=packaged.count_tokens,
            max_document_bytes=settings.max_document_bytes,
            batch_size=settings.embedding_batch_size,
            metrics=rag_metrics,
        )
        await broker.start()
        relay = asyncio.create_task(outbox.run(), name="rag-outbox-relay")
        worker = IngestionWorker(
            broker.config.connection_state.stream,
            ingestion,
            concurrency=settings.ingest_concurrency,
            ack_wait_s=settings.ingest_ack_wait_s,
        )
        ingesting = asyncio.create_task(worker.run(), name="rag-ingestion")
        limits = Limits(
            max_document_bytes=settings.max_document_bytes,
            default_chunking=ChunkingConfig(
                settings.default_chunk_max_tokens, settings.default_chunk_overlap_tokens
            ),
        )
        knowledge_bases = KnowledgeBases(db, outbox, catalog, index, embedders, limits)
        retrieval = Retrieval(db, index, embedders, min_relevance=settings.min_relevance, bm25=Bm25())
        server, _health = make_server(settings.rag_grpc_port, settings.rag_grpc_host, metrics=registry)
        rag_pb2_grpc.add_RagServiceServicer_to_server(RagServicer(knowledge_bases, retrieval), server)
        await server.start()
        address = f"{settings.rag_grpc_host}:{settings.rag_grpc_port}"
        log.info("rag serving", address=address, qdrant=settings.qdrant_url or "embedded")
        yield RunningRag(db, knowledge_bases, retrieval, ingestion, index, address, rag_metrics, registry)
    finally:
        if server is not None:
            await server.stop(grace=2)
        for task in (ingesting, relay):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await broker.stop()  # after the worker: unacknowledged work is redelivered to the next one
        index.close()
        await http.aclose()
        await catalog_channel.close()
        await scheduler_channel.close()
        await db.close()


async def serve(settings: RagSettings) -> None:
    metrics = CollectorRegistry()
    async with (
        running_rag(settings, metrics=metrics) as running,
        serving_metrics(
            metrics,
            settings.rag_grpc_host,
            settings.rag_metrics_port,
            setting="SUANLI_RAG_METRICS_PORT",
            refresh=[running.metrics.refresh],
        ),
    ):
        await asyncio.Event().wait()  # until cancelled by SIGTERM / SIGINT


def main() -> None:
    settings = RagSettings()
    run_service(settings, lambda: serve(settings))
