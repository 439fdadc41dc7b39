"""Knowledge bases across the real platform: the official `openai` client creates a vector store,
attaches Markdown, PDF and DOCX files uploaded to the catalog, waits while the rag service's
ingestion worker (off JetStream) indexes them into embedded Qdrant, and searches them. Also: bad
documents fail with their reason, another user gets 404 for everything, and a worker killed in
the middle of a document finishes it after its restart with exactly its chunks.

(`ask` against a deployed chat model is in test_inference_flow.py, which runs one.)"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import openai
import pytest
from qdrant_client import QdrantClient, models

from suanli_inference_gateway.platform.knowledge_bases.answers import NOTHING_FOUND

sys.path.append(str(Path(__file__).resolve().parents[2] / "services" / "rag" / "tests"))
from documents import docx_doc, encrypted_pdf, markdown_doc, pdf_doc

if TYPE_CHECKING:
    from conftest import LaunchPlatform, Platform

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ACK_WAIT_S = "4"  # how soon a killed worker's document goes to the next one


@pytest.fixture(scope="module")
def platform_env() -> dict[str, str]:
    return {"SUANLI_INGEST_ACK_WAIT_S": ACK_WAIT_S}


def _client(platform: Platform, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def alice(platform: Platform) -> openai.OpenAI:
    return _client(platform, platform.new_user()[1])


@pytest.fixture(scope="module")
def bob(platform: Platform) -> openai.OpenAI:
    return _client(platform, platform.new_user()[1])


@pytest.fixture(scope="module")
def store(alice: openai.OpenAI) -> Iterator[str]:
    """Alice's vector store with a Markdown, a PDF and a DOCX document, all indexed."""
    vs = alice.vector_stores.create(name="handbook")
    files = [
        ("guide.md", markdown_doc()),
        ("report.pdf", pdf_doc(["Revenue grew in spring.", "The launch code is ORCHID-42."])),
        ("memo.docx", docx_doc("Budget", ["The budget for 2027 is 3.5 million yuan."])),
    ]
    for name, data in files:
        uploaded = alice.files.create(file=(name, data), purpose="assistants")
        attached = alice.vector_stores.files.create_and_poll(
            vector_store_id=vs.id, file_id=uploaded.id, poll_interval_ms=200
        )
        assert attached.status == "completed", attached.last_error
    yield vs.id


def test_documents_of_three_formats_are_indexed_and_searchable(alice: openai.OpenAI, store: str) -> None:
    vs = alice.vector_stores.retrieve(store)
    assert (vs.file_counts.completed, vs.file_counts.total, vs.status) == (3, 3, "completed")
    assert vs.usage_bytes > 0
    listed = alice.vector_stores.files.list(vector_store_id=store)
    assert sorted(f.status for f in listed.data) == ["completed"] * 3
    first_page = alice.vector_stores.files.list(vector_store_id=store, limit=2, order="asc")
    assert len(first_page.data) == 2 and first_page.has_more
    assert [f.id for f in first_page] == [f.id for f in reversed(listed.data)]  # the client follows `after`

    results = alice.vector_stores.search(vector_store_id=store, query="What is the launch code?")
    best = results.data[0]
    assert best.filename == "report.pdf" and "ORCHID-42" in best.content[0].text
    budget = alice.vector_stores.search(
        vector_store_id=store, query="money planned for 2027", max_num_results=2
    )
    assert any("3.5 million" in r.content[0].text and r.filename == "memo.docx" for r in budget.data)
    linux = alice.vector_stores.search(vector_store_id=store, query="install on Linux", max_num_results=2)
    assert any("make run" in r.content[0].text for r in linux.data)


def test_a_file_batch_through_the_openai_client(alice: openai.OpenAI) -> None:
    vs = alice.vector_stores.create(name="batch")
    batch = alice.vector_stores.file_batches.upload_and_poll(
        vector_store_id=vs.id,
        files=[
            ("guide.md", markdown_doc()),
            ("memo.docx", docx_doc("Budget", ["The budget is 3.5 million."])),
        ],
        poll_interval_ms=200,
    )
    assert (batch.status, batch.file_counts.completed, batch.file_counts.total) == ("completed", 2, 2)
    files = alice.vector_stores.file_batches.list_files(batch.id, vector_store_id=vs.id)
    assert sorted(f.filename for f in files.data) == ["guide.md", "memo.docx"]  # type: ignore[attr-defined]


def test_another_user_gets_404_for_everything(
    alice: openai.OpenAI, bob: openai.OpenAI, platform: Platform, store: str
) -> None:
    file_id = alice.vector_stores.files.list(vector_store_id=store).data[0].id
    calls = [
        lambda: bob.vector_stores.retrieve(store),
        lambda: bob.vector_stores.files.list(vector_store_id=store),
        lambda: bob.vector_stores.files.retrieve(file_id, vector_store_id=store),
        lambda: bob.vector_stores.search(vector_store_id=store, query="launch code"),
        lambda: bob.vector_stores.files.delete(file_id, vector_store_id=store),
        lambda: bob.vector_stores.delete(store),
        lambda: bob.vector_stores.files.create(vector_store_id=store, file_id=file_id),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            call()
    asked = httpx.post(
        f"{platform.base_url}/api/v1/knowledge-bases/{store}/ask",
        json={"question": "What is the launch code?"},
        headers={"Authorization": f"Bearer {bob.api_key}"},
    )
    assert asked.status_code == 404 and asked.json()["error"]["param"] == "vector_store_id"
    assert store not in [v.id for v in bob.vector_stores.list().data]
    assert alice.vector_stores.retrieve(store).file_counts.completed == 3


def test_bad_input_gets_a_clear_error_or_status(alice: openai.OpenAI, platform: Platform, store: str) -> None:
    unsupported = alice.files.create(file=("weights.bin", b"\x00\x01\x02"), purpose="assistants")
    with pytest.raises(openai.BadRequestError) as refused:
        alice.vector_stores.files.create(vector_store_id=store, file_id=unsupported.id)
    assert refused.value.code == "unsupported_file"

    locked = alice.files.create(file=("locked.pdf", encrypted_pdf()), purpose="assistants")
    failed = alice.vector_stores.files.create_and_poll(
        vector_store_id=store, file_id=locked.id, poll_interval_ms=200
    )
    assert failed.status == "failed"
    assert failed.last_error is not None and failed.last_error.code == "encrypted_file"

    with pytest.raises(openai.BadRequestError) as bad_filter:
        alice.vector_stores.search(
            vector_store_id=store, query="x", filters={"type": "like", "key": "a", "value": 1}
        )  # type: ignore[arg-type]
    assert bad_filter.value.param == "filters"

    with pytest.raises(openai.ConflictError) as undeployed:
        alice.vector_stores.create(name="x", extra_body={"embedding_model": "no-such-embedder"})
    assert undeployed.value.code == "model_not_deployed"

    ask = f"{platform.base_url}/api/v1/knowledge-bases/{store}/ask"
    headers = {"Authorization": f"Bearer {alice.api_key}"}
    nothing = httpx.post(
        ask, json={"question": "quantum chromodynamics and gluon confinement"}, headers=headers
    )
    assert nothing.status_code == 200, nothing.text
    assert nothing.json()["found"] is False and nothing.json()["citations"] == []
    # Serving is off on this platform: the bound model is not deployed, and the answer says so.
    gone = httpx.post(ask, json={"question": "What is the launch code?"}, headers=headers)
    assert gone.status_code == 409 and gone.json()["error"]["code"] == "model_not_deployed"
    empty = httpx.post(ask, json={"question": ""}, headers=headers)
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "question"


def _long_document(sections: int) -> bytes:
    return "\n\n".join(
        f"## Runbook step {n}\n\nStep {n} of the runbook: drain node {n % 17}, move its replicas to "
        f"pool {n % 5}, verify checksum {n * 7919 % 100003} and record ticket OPS-{n}. " * 4
        for n in range(sections)
    ).encode()


def test_a_worker_killed_mid_document_finishes_it_after_restart_with_exactly_its_chunks(
    launch_platform: LaunchPlatform, tmp_path: Path
) -> None:
    home = tmp_path / "kill-home"
    platform = launch_platform(home=home, extra_env={"SUANLI_INGEST_ACK_WAIT_S": ACK_WAIT_S})
    client = _client(platform, platform.new_user()[1])
    vs = client.vector_stores.create(name="runbook")
    uploaded = client.files.create(file=("runbook.md", _long_document(900)), purpose="assistants")
    client.vector_stores.files.create(vector_store_id=vs.id, file_id=uploaded.id)

    def progress() -> tuple[str, int, int]:
        while True:
            try:
                state = client.vector_stores.files.retrieve(uploaded.id, vector_store_id=vs.id)
                break
            except openai.InternalServerError as exc:  # 503 while the rag service restarts
                assert exc.status_code == 503, exc
                time.sleep(0.5)
        indexed = (state.model_extra or {})["progress"]  # Suanli's extra field
        return state.status, int(indexed["chunks"]), int(indexed["chunks_total"])

    deadline = time.monotonic() + 120
    while (current := progress())[1] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    status, done, total = current
    assert status == "in_progress" and 0 < done < total, current
    killed = platform.child_pid("rag")
    os.kill(killed, signal.SIGKILL)

    deadline = time.monotonic() + 300
    while (current := progress())[0] == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.5)
    status, done, total = current
    assert status == "completed", current
    assert done == total
    assert platform.child_pid("rag") != killed  # the launcher restarted it
    assert client.vector_stores.search(vector_store_id=vs.id, query="ticket OPS-777").data

    platform.stop()  # embedded Qdrant's folder is the rag process's until then
    qdrant = QdrantClient(path=str(home / "rag" / "qdrant"))
    try:
        only_this_file = models.Filter(
            must=[models.FieldCondition(key="file_id", match=models.MatchValue(value=uploaded.id))]
        )
        points = qdrant.count(f"kb_{vs.id}", count_filter=only_this_file, exact=True).count
        indexes = {
            p.payload["chunk_index"]
            for p in qdrant.scroll(f"kb_{vs.id}", limit=total + 10, with_payload=["chunk_index"])[0]
            if p.payload
        }
    finally:
        qdrant.close()
    assert points == total
    assert indexes == set(range(total))


def test_the_cli_builds_and_searches_a_knowledge_base(platform: Platform, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from suanli_cli.main import app

    env = {
        "SUANLI_API_URL": platform.base_url,
        "SUANLI_API_KEY": platform.new_user()[1],
        "SUANLI_CONFIG": str(tmp_path / "cli.json"),
    }
    runner = CliRunner()
    created = runner.invoke(app, ["kb", "create", "notes", "--chunk-size", "100", "--json"], env=env)
    assert created.exit_code == 0, created.output
    kb_id = json.loads(created.stdout)["id"]
    (tmp_path / "guide.md").write_bytes(markdown_doc())
    (tmp_path / "locked.pdf").write_bytes(encrypted_pdf())
    added = runner.invoke(
        app, ["kb", "add", kb_id, str(tmp_path / "guide.md"), str(tmp_path / "locked.pdf")], env=env
    )
    assert added.exit_code == 1  # one of the two failed, and the CLI says which and why
    assert "locked.pdf" in added.output and "encrypted_file" in added.output
    found = runner.invoke(app, ["kb", "search", kb_id, "install on Linux", "--json"], env=env)
    assert found.exit_code == 0, found.output
    assert any("make run" in r["content"][0]["text"] for r in json.loads(found.stdout)["data"])
    asked = runner.invoke(
        app, ["kb", "ask", kb_id, "quantum chromodynamics gluon confinement", "--json"], env=env
    )
    assert asked.exit_code == 0, asked.output
    assert json.loads(asked.stdout) == {"answer": NOTHING_FOUND, "citations": []}
