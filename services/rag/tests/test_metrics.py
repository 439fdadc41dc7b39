"""rag's metrics over the real service: the ingestion backlog counts documents not indexed yet,
and every document whose ingestion ends is counted by outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING

from documents import markdown_doc

if TYPE_CHECKING:
    from conftest import Rag


async def test_backlog_and_ingested_documents(rag: Rag) -> None:
    registry = rag.running.registry

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    await rag.running.metrics.refresh()
    assert value("suanli_rag_ingestion_backlog") == 0
    assert value("suanli_rag_documents_ingested_total", status="completed") == 0

    kb = await rag.create()
    # The catalog is down for the first read: the document stays in the backlog until a retry.
    rag.catalog.unavailable_reads = 1
    good = await rag.attach(kb.id, "guide.md", markdown_doc())
    await rag.running.metrics.refresh()
    assert value("suanli_rag_ingestion_backlog") == 1
    assert (await rag.settled(kb.id, good.file_id)).status == "completed"
    bad = await rag.attach(kb.id, "empty.md", b"  \n\n ")
    assert (await rag.settled(kb.id, bad.file_id)).status == "failed"

    await rag.running.metrics.refresh()
    assert value("suanli_rag_ingestion_backlog") == 0
    assert value("suanli_rag_documents_ingested_total", status="completed") == 1
    assert value("suanli_rag_documents_ingested_total", status="failed") == 1
    # The service's gRPC server records into the same registry.
    add = "suanli.v1.RagService/AddDocument"
    assert value("suanli_grpc_server_requests_total", method=add, code="OK") == 2
