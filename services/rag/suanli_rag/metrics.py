"""rag's Prometheus metrics: the ingestion backlog (documents waiting or being indexed, counted in
the database when scraped) and the documents whose ingestion ended, by outcome."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from suanli_common.db import Database
from suanli_rag.domain import DocumentStatus
from suanli_rag.repository import RagRepository


class RagMetrics:
    def __init__(self, registry: CollectorRegistry, db: Database) -> None:
        self._db = db
        self._backlog = Gauge(
            "suanli_rag_ingestion_backlog",
            "Documents attached to a knowledge base and not indexed yet (waiting or being ingested)",
            registry=registry,
        )
        self._ingested = Counter(
            "suanli_rag_documents_ingested_total",
            "Documents whose ingestion ended, by outcome (completed or failed)",
            ["status"],
            registry=registry,
        )
        for status in (DocumentStatus.completed, DocumentStatus.failed):
            self._ingested.labels(status=status.value)  # exported at 0 before the first one

    def document_ingested(self, status: DocumentStatus) -> None:
        self._ingested.labels(status=status.value).inc()

    async def refresh(self) -> None:
        """Counts the backlog; the /metrics endpoint runs it before each scrape."""
        async with self._db.session() as session:
            backlog = await RagRepository(session).count_documents(DocumentStatus.in_progress)
        self._backlog.set(backlog)
