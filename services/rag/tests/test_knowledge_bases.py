"""The rag service over its gRPC API with ingestion running off JetStream: documents become
chunks in Qdrant exactly once, retrieval finds them, bad documents fail cleanly, and one user's
knowledge base is invisible to another."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from documents import chinese_markdown_doc, docx_doc, encrypted_pdf, markdown_doc, pdf_doc

from suanli_common.errors import InvalidRequest, NotFound, PayloadTooLarge
from suanli_common.proto.suanli.v1 import rag_pb2 as pb
from suanli_common.proto.suanli.v1.events_pb2 import DocumentChanged
from suanli_rag.models import DocumentRow

if TYPE_CHECKING:
    from conftest import Rag

ALICE, BOB = "user_alice", "user_bob"  # as in conftest

LONG_TEXT = "\n\n".join(
    f"Section {n} explains how the scheduler places job number {n} on a GPU slot of the ledger, "
    f"renews its lease with heartbeats and requeues it when the agent is lost." * 3
    for n in range(12)
)


async def test_a_markdown_document_is_chunked_indexed_and_found(rag: Rag) -> None:
    kb = await rag.create()
    attached = await rag.attach(kb.id, "guide.md", markdown_doc())
    assert attached.status == "in_progress"
    document = await rag.settled(kb.id, attached.file_id)
    assert document.status == "completed", document.error_message
    assert document.chunks == document.chunks_total > 0
    assert await rag.running.index.count(kb.id, attached.file_id) == document.chunks

    found = await rag.search(kb.id, "How do I install it on Linux?", max_results=2)
    [linux] = [p for p in found if "make run" in p.text]
    assert linux.heading_path == "Suanli guide > Install > On Linux"
    assert linux.filename == "guide.md"
    got = await rag.stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(caller_id=ALICE, id=kb.id))
    assert (got.file_counts.completed, got.file_counts.total, got.status) == (1, 1, "completed")


async def test_pdf_and_docx_passages_keep_their_source(rag: Rag) -> None:
    kb = await rag.create()
    pdf = await rag.attach(
        kb.id, "report.pdf", pdf_doc(["Revenue grew in spring.", "The launch code is ORCHID-42."])
    )
    memo = await rag.attach(
        kb.id, "memo.docx", docx_doc("Budget", ["The budget for 2027 is 3.5 million yuan."])
    )
    assert (await rag.settled(kb.id, pdf.file_id)).status == "completed"
    assert (await rag.settled(kb.id, memo.file_id)).status == "completed"

    [code, *_] = await rag.search(kb.id, "What is the launch code?")
    assert (code.filename, code.page) == ("report.pdf", 2)
    assert "ORCHID-42" in code.text
    [budget, *_] = await rag.search(kb.id, "how much money is planned for 2027")
    assert budget.filename == "memo.docx" and "3.5 million" in budget.text


async def test_chinese_questions_find_chinese_passages(rag: Rag) -> None:
    kb = await rag.create()
    attached = await rag.attach(kb.id, "指南.md", chinese_markdown_doc())
    assert (await rag.settled(kb.id, attached.file_id)).status == "completed"
    [best, *_] = await rag.search(kb.id, "怎么上传文档")
    assert "上传文档" in best.text
    assert best.heading_path.endswith("使用")


async def test_ingesting_the_same_work_again_adds_no_chunk(rag: Rag) -> None:
    """What a redelivered document.uploaded does: the same points are written again, no copies."""
    kb = await rag.create()
    attached = await rag.attach(kb.id, "long.txt", LONG_TEXT.encode())
    first = await rag.settled(kb.id, attached.file_id)
    assert first.chunks > 3
    async with rag.running.db.session() as session:
        attempt = (await session.get(DocumentRow, (kb.id, attached.file_id))).attempt_id  # type: ignore[union-attr]
    event = DocumentChanged(
        knowledge_base_id=kb.id, file_id=attached.file_id, owner_id=ALICE, attempt_id=attempt
    )
    await rag.running.ingestion.ingest(event)  # completed: skipped
    # Even a worker that starts the attempt over (the row back in progress) rewrites the same points.
    async with rag.running.db.session() as session:
        row = await session.get(DocumentRow, (kb.id, attached.file_id))
        assert row is not None
        row.status = "in_progress"
    await rag.running.ingestion.ingest(event)
    again = await rag.settled(kb.id, attached.file_id)
    assert again.chunks == first.chunks
    assert await rag.running.index.count(kb.id) == first.chunks


async def test_reindexing_with_other_chunking_leaves_exactly_the_new_chunks(rag: Rag) -> None:
    kb = await rag.create(chunk_max_tokens=40, chunk_overlap_tokens=0)
    attached = await rag.attach(kb.id, "long.txt", LONG_TEXT.encode())
    small = (await rag.settled(kb.id, attached.file_id)).chunks
    reindexed = await rag.stub.ReindexKnowledgeBase(
        pb.ReindexKnowledgeBaseRequest(
            caller_id=ALICE, id=kb.id, chunk_max_tokens=200, chunk_overlap_tokens=20
        )
    )
    assert reindexed.chunk_max_tokens == 200
    large = await rag.settled(kb.id, attached.file_id)
    assert large.status == "completed" and large.chunks < small
    assert await rag.running.index.count(kb.id) == large.chunks


@pytest.mark.parametrize(
    ("filename", "data", "code"),
    [
        ("secret.pdf", encrypted_pdf(), "encrypted_file"),
        ("broken.pdf", b"%PDF-1.7\n" + b"\x00garbage" * 50, "corrupt_file"),
        ("empty.md", b"   \n\n  ", "empty_document"),
        ("blank.pdf", pdf_doc([""]), "empty_document"),
    ],
)
async def test_a_bad_document_fails_with_its_reason_and_leaves_no_chunk(
    rag: Rag, filename: str, data: bytes, code: str
) -> None:
    kb = await rag.create()
    attached = await rag.attach(kb.id, filename, data)
    document = await rag.settled(kb.id, attached.file_id)
    assert (document.status, document.error_code) == ("failed", code)
    assert document.error_message
    assert await rag.running.index.count(kb.id, attached.file_id) == 0
    got = await rag.stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(caller_id=ALICE, id=kb.id))
    assert got.file_counts.failed == 1


async def test_files_that_cannot_be_documents_are_refused_when_attached(rag: Rag) -> None:
    kb = await rag.create()
    with pytest.raises(InvalidRequest, match="not a supported document") as unsupported:
        await rag.attach(kb.id, "model.bin", b"\x00\x01")
    assert unsupported.value.code == "unsupported_file"
    training = rag.catalog.put(ALICE, "train.jsonl", b'{"messages": []}\n', purpose="fine-tune")
    with pytest.raises(InvalidRequest, match="purpose") as purpose:
        await rag.stub.AddDocument(
            pb.AddDocumentRequest(caller_id=ALICE, knowledge_base_id=kb.id, file_id=training)
        )
    assert purpose.value.param == "file_id"
    huge = rag.catalog.put(ALICE, "huge.txt", b"x")
    rag.catalog.files[huge][1].__init__(huge, "huge.txt", "assistants", 10**12)  # type: ignore[misc]
    with pytest.raises(PayloadTooLarge):
        await rag.stub.AddDocument(
            pb.AddDocumentRequest(caller_id=ALICE, knowledge_base_id=kb.id, file_id=huge)
        )
    with pytest.raises(InvalidRequest, match="overlap") as overlap:
        await rag.create(chunk_max_tokens=100, chunk_overlap_tokens=80)
    assert overlap.value.param == "chunking_strategy"
    with pytest.raises(InvalidRequest, match="224"):  # more than the embedding model reads
        await rag.create(chunk_max_tokens=400, chunk_overlap_tokens=0)


async def test_another_user_sees_nothing(rag: Rag) -> None:
    kb = await rag.create(owner=ALICE)
    attached = await rag.attach(kb.id, "guide.md", markdown_doc())
    await rag.settled(kb.id, attached.file_id)
    calls = [
        rag.stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(caller_id=BOB, id=kb.id)),
        rag.stub.GetDocument(
            pb.GetDocumentRequest(caller_id=BOB, knowledge_base_id=kb.id, file_id=attached.file_id)
        ),
        rag.stub.ListDocuments(pb.ListDocumentsRequest(caller_id=BOB, knowledge_base_id=kb.id)),
        rag.stub.Search(pb.SearchRequest(caller_id=BOB, knowledge_base_id=kb.id, query="install")),
        rag.stub.PrepareAnswer(
            pb.PrepareAnswerRequest(caller_id=BOB, knowledge_base_id=kb.id, question="install")
        ),
        rag.stub.DeleteDocument(
            pb.DeleteDocumentRequest(caller_id=BOB, knowledge_base_id=kb.id, file_id=attached.file_id)
        ),
        rag.stub.DeleteKnowledgeBase(pb.DeleteKnowledgeBaseRequest(caller_id=BOB, id=kb.id)),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            await call
    # Nor may Bob attach Alice's file to a knowledge base of his own.
    bobs = await rag.create(owner=BOB)
    with pytest.raises(NotFound):
        await rag.stub.AddDocument(
            pb.AddDocumentRequest(caller_id=BOB, knowledge_base_id=bobs.id, file_id=attached.file_id)
        )
    listed = await rag.stub.ListKnowledgeBases(pb.ListKnowledgeBasesRequest(caller_id=BOB))
    assert [k.id for k in listed.knowledge_bases] == [bobs.id]
    assert await rag.search(kb.id, "install")  # Alice's is untouched


async def test_attribute_filters_narrow_the_search(rag: Rag) -> None:
    kb = await rag.create()
    a = await rag.attach(
        kb.id, "a.md", b"# Team A\n\nThe release ships on Friday.", attributes={"team": "a", "year": 2025}
    )
    b = await rag.attach(
        kb.id, "b.md", b"# Team B\n\nThe release ships on Monday.", attributes={"team": "b", "year": 2026}
    )
    await rag.settled(kb.id, a.file_id)
    await rag.settled(kb.id, b.file_id)
    only_b = await rag.search(
        kb.id,
        "when does the release ship",
        filter_json=json.dumps({"type": "eq", "key": "team", "value": "b"}),
    )
    assert {p.filename for p in only_b} == {"b.md"}
    recent = await rag.search(
        kb.id,
        "release",
        filter_json=json.dumps({"type": "and", "filters": [{"type": "gte", "key": "year", "value": 2026}]}),
    )
    assert {p.filename for p in recent} == {"b.md"}
    assert json.loads(recent[0].attributes_json) == {"team": "b", "year": 2026}
    with pytest.raises(InvalidRequest) as bad:
        await rag.search(
            kb.id, "release", filter_json=json.dumps({"type": "like", "key": "team", "value": "b"})
        )
    assert bad.value.param == "filters"


async def test_a_question_about_something_else_retrieves_nothing(rag: Rag) -> None:
    kb = await rag.create()
    attached = await rag.attach(kb.id, "guide.md", markdown_doc())
    await rag.settled(kb.id, attached.file_id)
    prepared = await rag.stub.PrepareAnswer(
        pb.PrepareAnswerRequest(
            caller_id=ALICE, knowledge_base_id=kb.id, question="quantum chromodynamics gluons"
        )
    )
    assert list(prepared.passages) == []
    grounded = await rag.stub.PrepareAnswer(
        pb.PrepareAnswerRequest(caller_id=ALICE, knowledge_base_id=kb.id, question="How do I install Suanli?")
    )
    assert grounded.model == "smollm2"
    assert grounded.passages and "[1]" in grounded.user_prompt
    assert "How do I install Suanli?" in grounded.user_prompt


async def test_deleting_removes_the_chunks(rag: Rag) -> None:
    kb = await rag.create()
    guide = await rag.attach(kb.id, "guide.md", markdown_doc())
    other = await rag.attach(kb.id, "long.txt", LONG_TEXT.encode())
    await rag.settled(kb.id, guide.file_id)
    kept = (await rag.settled(kb.id, other.file_id)).chunks
    await rag.stub.DeleteDocument(
        pb.DeleteDocumentRequest(caller_id=ALICE, knowledge_base_id=kb.id, file_id=guide.file_id)
    )
    assert await rag.running.index.count(kb.id) == kept
    assert all(p.filename == "long.txt" for p in await rag.search(kb.id, "install on Linux"))
    await rag.stub.DeleteKnowledgeBase(pb.DeleteKnowledgeBaseRequest(caller_id=ALICE, id=kb.id))
    assert await rag.running.index.count(kb.id) == 0
    with pytest.raises(NotFound):
        await rag.stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(caller_id=ALICE, id=kb.id))


async def test_create_is_idempotent_per_request_and_attaches_files(rag: Rag) -> None:
    file_id = rag.catalog.put(ALICE, "guide.md", markdown_doc())
    request = pb.CreateKnowledgeBaseRequest(
        caller_id=ALICE, name="docs", model="smollm2", client_request_id="req-1", file_ids=[file_id]
    )
    first = await rag.stub.CreateKnowledgeBase(request)
    again = await rag.stub.CreateKnowledgeBase(request)
    assert first.id == again.id
    assert first.file_counts.in_progress == 1
    assert (await rag.settled(first.id, file_id)).status == "completed"


async def test_documents_of_a_new_knowledge_base_are_indexed_side_by_side(rag: Rag) -> None:
    """Several first documents at once: the collection is made once, and every one completes."""
    file_ids = [
        rag.catalog.put(ALICE, f"part-{n}.txt", (LONG_TEXT + f" Part {n}.").encode()) for n in range(4)
    ]
    kb = await rag.stub.CreateKnowledgeBase(
        pb.CreateKnowledgeBaseRequest(caller_id=ALICE, name="docs", model="smollm2", file_ids=file_ids)
    )
    settled = [await rag.settled(kb.id, file_id) for file_id in file_ids]
    assert [d.status for d in settled] == ["completed"] * 4
    assert await rag.running.index.count(kb.id) == sum(d.chunks for d in settled)


async def test_a_document_deleted_and_attached_again_mid_indexing_ends_with_only_the_new_chunks(
    rag: Rag,
) -> None:
    kb = await rag.create()
    file_id = rag.catalog.put(ALICE, "long.txt", (LONG_TEXT * 4).encode())
    add = pb.AddDocumentRequest(caller_id=ALICE, knowledge_base_id=kb.id, file_id=file_id)
    await rag.stub.AddDocument(add)
    await rag.stub.DeleteDocument(
        pb.DeleteDocumentRequest(caller_id=ALICE, knowledge_base_id=kb.id, file_id=file_id)
    )
    again = await rag.stub.AddDocument(
        pb.AddDocumentRequest(
            caller_id=ALICE, knowledge_base_id=kb.id, file_id=file_id, attributes_json='{"version": 2}'
        )
    )
    assert again.status == "in_progress"
    done = await rag.settled(kb.id, file_id)
    assert done.status == "completed"
    assert await rag.running.index.count(kb.id, file_id) == done.chunks
    [passage, *_] = await rag.search(kb.id, "requeues the job when the agent is lost")
    assert json.loads(passage.attributes_json) == {"version": 2}


async def test_an_unreachable_catalog_is_waited_for_and_a_failed_document_can_be_retried(rag: Rag) -> None:
    kb = await rag.create()
    rag.catalog.unavailable_reads = 1  # the first read finds the catalog restarting
    attached = await rag.attach(kb.id, "guide.md", markdown_doc())
    assert (await rag.settled(kb.id, attached.file_id, timeout=30)).status == "completed"

    rag.catalog.files[attached.file_id] = (ALICE, rag.catalog.files[attached.file_id][1], b"   ")
    await rag.stub.ReindexKnowledgeBase(
        pb.ReindexKnowledgeBaseRequest(
            caller_id=ALICE, id=kb.id, chunk_max_tokens=100, chunk_overlap_tokens=10
        )
    )
    assert (await rag.settled(kb.id, attached.file_id)).error_code == "empty_document"
    assert await rag.running.index.count(kb.id) == 0
    rag.catalog.files[attached.file_id] = (ALICE, rag.catalog.files[attached.file_id][1], markdown_doc())
    retried = await rag.stub.AddDocument(
        pb.AddDocumentRequest(caller_id=ALICE, knowledge_base_id=kb.id, file_id=attached.file_id)
    )
    assert retried.status == "in_progress"  # attaching a failed document again retries it
    assert (await rag.settled(kb.id, attached.file_id)).status == "completed"


async def test_a_file_batch_is_done_when_all_its_documents_are(rag: Rag) -> None:
    kb = await rag.create()
    good = rag.catalog.put(ALICE, "guide.md", markdown_doc())
    locked = rag.catalog.put(ALICE, "locked.pdf", encrypted_pdf())
    created = await rag.stub.CreateDocumentBatch(
        pb.CreateDocumentBatchRequest(
            caller_id=ALICE,
            knowledge_base_id=kb.id,
            files=[pb.BatchFile(file_id=good, attributes_json='{"team": "a"}'), pb.BatchFile(file_id=locked)],
        )
    )
    assert created.id.startswith("vsfb_") and created.file_counts.total == 2
    await rag.settled(kb.id, good)
    await rag.settled(kb.id, locked)
    batch = await rag.stub.GetDocumentBatch(
        pb.GetDocumentBatchRequest(caller_id=ALICE, knowledge_base_id=kb.id, batch_id=created.id)
    )
    assert (batch.status, batch.file_counts.completed, batch.file_counts.failed) == ("completed", 1, 1)
    members = await rag.stub.ListDocuments(
        pb.ListDocumentsRequest(caller_id=ALICE, knowledge_base_id=kb.id, batch_id=created.id)
    )
    assert sorted(d.file_id for d in members.documents) == sorted([good, locked])
    with pytest.raises(NotFound):
        await rag.stub.GetDocumentBatch(
            pb.GetDocumentBatchRequest(caller_id=BOB, knowledge_base_id=kb.id, batch_id=created.id)
        )
    with pytest.raises(InvalidRequest):  # one file that cannot be a document: nothing is attached
        await rag.stub.CreateDocumentBatch(
            pb.CreateDocumentBatchRequest(
                caller_id=ALICE,
                knowledge_base_id=kb.id,
                files=[pb.BatchFile(file_id=rag.catalog.put(ALICE, "x.bin", b"\x00"))],
            )
        )
