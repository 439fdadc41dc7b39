"""Knowledge bases as the gateway sees them: the rag service owns them; these are its gRPC calls
and the dataclasses they return."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from suanli_common.proto.suanli.v1 import rag_pb2 as pb
from suanli_common.proto.suanli.v1 import rag_pb2_grpc

RAG_SERVICE = "suanli.v1.RagService"
# Retrieval embeds the question and may wait behind an ingestion batch; embedded Qdrant searches by
# brute force; dropping a large collection takes a while: longer than the default deadline.
SLOW_CALL_TIMEOUT_S = 60.0
# Create is keyed by client_request_id; the rest read, or delete what may already be gone.
IDEMPOTENT_METHODS = (
    "CreateKnowledgeBase",
    "GetKnowledgeBase",
    "ListKnowledgeBases",
    "GetDocument",
    "ListDocuments",
    "GetDocumentBatch",
    "Search",
    "PrepareAnswer",
)


@dataclass(frozen=True, slots=True)
class FileCounts:
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    id: str
    name: str
    description: str
    model: str
    embedding_model: str
    chunk_max_tokens: int
    chunk_overlap_tokens: int
    metadata: dict[str, str]
    created_at: datetime
    last_active_at: datetime
    file_counts: FileCounts
    usage_bytes: int
    status: str


@dataclass(frozen=True, slots=True)
class Document:
    file_id: str
    knowledge_base_id: str
    filename: str
    status: str
    error_code: str
    error_message: str
    bytes: int
    chunks: int
    chunks_total: int
    attributes: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Passage:
    file_id: str
    filename: str
    chunk_index: int
    text: str
    score: float
    heading_path: str = ""
    page: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DocumentBatch:
    id: str
    knowledge_base_id: str
    status: str
    file_counts: FileCounts
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PreparedAnswer:
    model: str
    system_prompt: str
    user_prompt: str
    passages: list[Passage]


@dataclass(frozen=True, slots=True)
class NewKnowledgeBase:
    name: str = ""
    description: str = ""
    model: str = ""
    embedding_model: str = ""
    chunk_max_tokens: int = 0
    chunk_overlap_tokens: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    file_ids: tuple[str, ...] = ()


class RagApi(Protocol):
    async def create_knowledge_base(
        self, caller_id: str, new: NewKnowledgeBase, client_request_id: str
    ) -> KnowledgeBase: ...
    async def get_knowledge_base(self, caller_id: str, kb_id: str) -> KnowledgeBase: ...
    async def list_knowledge_bases(self, caller_id: str) -> list[KnowledgeBase]: ...
    async def delete_knowledge_base(self, caller_id: str, kb_id: str) -> KnowledgeBase: ...
    async def reindex(
        self, caller_id: str, kb_id: str, max_tokens: int, overlap_tokens: int
    ) -> KnowledgeBase: ...
    async def add_document(
        self, caller_id: str, kb_id: str, file_id: str, attributes: dict[str, Any]
    ) -> Document: ...
    async def get_document(self, caller_id: str, kb_id: str, file_id: str) -> Document: ...
    async def list_documents(
        self, caller_id: str, kb_id: str, status: str = "", batch_id: str = ""
    ) -> list[Document]: ...
    async def create_batch(
        self, caller_id: str, kb_id: str, files: list[tuple[str, dict[str, Any]]]
    ) -> DocumentBatch: ...
    async def get_batch(self, caller_id: str, kb_id: str, batch_id: str) -> DocumentBatch: ...
    async def delete_document(self, caller_id: str, kb_id: str, file_id: str) -> Document: ...
    async def search(
        self,
        caller_id: str,
        kb_id: str,
        query: str,
        *,
        max_results: int,
        filters: dict[str, Any] | None,
        score_threshold: float,
    ) -> list[Passage]: ...
    async def prepare_answer(
        self, caller_id: str, kb_id: str, question: str, top_k: int
    ) -> PreparedAnswer: ...


def _time(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(UTC)


def _counts(counts: pb.FileCounts) -> FileCounts:
    return FileCounts(
        in_progress=counts.in_progress,
        completed=counts.completed,
        failed=counts.failed,
        cancelled=counts.cancelled,
        total=counts.total,
    )


def _batch(msg: pb.DocumentBatch) -> DocumentBatch:
    return DocumentBatch(
        id=msg.id,
        knowledge_base_id=msg.knowledge_base_id,
        status=msg.status,
        file_counts=_counts(msg.file_counts),
        created_at=_time(msg.created_at),
    )


def _knowledge_base(msg: pb.KnowledgeBase) -> KnowledgeBase:
    return KnowledgeBase(
        id=msg.id,
        name=msg.name,
        description=msg.description,
        model=msg.model,
        embedding_model=msg.embedding_model,
        chunk_max_tokens=msg.chunk_max_tokens,
        chunk_overlap_tokens=msg.chunk_overlap_tokens,
        metadata=json.loads(msg.metadata_json or "{}"),
        created_at=_time(msg.created_at),
        last_active_at=_time(msg.last_active_at),
        file_counts=_counts(msg.file_counts),
        usage_bytes=msg.usage_bytes,
        status=msg.status,
    )


def _document(msg: pb.Document) -> Document:
    return Document(
        file_id=msg.file_id,
        knowledge_base_id=msg.knowledge_base_id,
        filename=msg.filename,
        status=msg.status,
        error_code=msg.error_code,
        error_message=msg.error_message,
        bytes=msg.bytes,
        chunks=msg.chunks,
        chunks_total=msg.chunks_total,
        attributes=json.loads(msg.attributes_json or "{}"),
        created_at=_time(msg.created_at),
    )


def _passage(msg: pb.Passage) -> Passage:
    return Passage(
        file_id=msg.file_id,
        filename=msg.filename,
        chunk_index=msg.chunk_index,
        text=msg.text,
        score=msg.score,
        heading_path=msg.heading_path,
        page=msg.page or None,
        attributes=json.loads(msg.attributes_json or "{}"),
    )


class RagClient:
    """`RagApi` over gRPC (a channel from `suanli_common.grpc.make_channel`)."""

    def __init__(self, stub: rag_pb2_grpc.RagServiceStub) -> None:
        self._stub = stub

    async def create_knowledge_base(
        self, caller_id: str, new: NewKnowledgeBase, client_request_id: str
    ) -> KnowledgeBase:
        request = pb.CreateKnowledgeBaseRequest(
            caller_id=caller_id,
            name=new.name,
            description=new.description,
            model=new.model,
            embedding_model=new.embedding_model,
            chunk_max_tokens=new.chunk_max_tokens,
            chunk_overlap_tokens=new.chunk_overlap_tokens,
            metadata_json=json.dumps(new.metadata),
            client_request_id=client_request_id,
            file_ids=list(new.file_ids),
        )
        return _knowledge_base(await self._stub.CreateKnowledgeBase(request))

    async def get_knowledge_base(self, caller_id: str, kb_id: str) -> KnowledgeBase:
        request = pb.GetKnowledgeBaseRequest(caller_id=caller_id, id=kb_id)
        return _knowledge_base(await self._stub.GetKnowledgeBase(request))

    async def list_knowledge_bases(self, caller_id: str) -> list[KnowledgeBase]:
        response = await self._stub.ListKnowledgeBases(pb.ListKnowledgeBasesRequest(caller_id=caller_id))
        return [_knowledge_base(kb) for kb in response.knowledge_bases]

    async def delete_knowledge_base(self, caller_id: str, kb_id: str) -> KnowledgeBase:
        request = pb.DeleteKnowledgeBaseRequest(caller_id=caller_id, id=kb_id)
        return _knowledge_base(await self._stub.DeleteKnowledgeBase(request, timeout=SLOW_CALL_TIMEOUT_S))

    async def reindex(
        self, caller_id: str, kb_id: str, max_tokens: int, overlap_tokens: int
    ) -> KnowledgeBase:
        request = pb.ReindexKnowledgeBaseRequest(
            caller_id=caller_id, id=kb_id, chunk_max_tokens=max_tokens, chunk_overlap_tokens=overlap_tokens
        )
        return _knowledge_base(await self._stub.ReindexKnowledgeBase(request))

    async def add_document(
        self, caller_id: str, kb_id: str, file_id: str, attributes: dict[str, Any]
    ) -> Document:
        request = pb.AddDocumentRequest(
            caller_id=caller_id,
            knowledge_base_id=kb_id,
            file_id=file_id,
            attributes_json=json.dumps(attributes),
        )
        return _document(await self._stub.AddDocument(request))

    async def get_document(self, caller_id: str, kb_id: str, file_id: str) -> Document:
        request = pb.GetDocumentRequest(caller_id=caller_id, knowledge_base_id=kb_id, file_id=file_id)
        return _document(await self._stub.GetDocument(request))

    async def list_documents(
        self, caller_id: str, kb_id: str, status: str = "", batch_id: str = ""
    ) -> list[Document]:
        request = pb.ListDocumentsRequest(
            caller_id=caller_id, knowledge_base_id=kb_id, status=status, batch_id=batch_id
        )
        return [_document(d) for d in (await self._stub.ListDocuments(request)).documents]

    async def create_batch(
        self, caller_id: str, kb_id: str, files: list[tuple[str, dict[str, Any]]]
    ) -> DocumentBatch:
        request = pb.CreateDocumentBatchRequest(
            caller_id=caller_id,
            knowledge_base_id=kb_id,
            files=[pb.BatchFile(file_id=f, attributes_json=json.dumps(a)) for f, a in files],
        )
        return _batch(await self._stub.CreateDocumentBatch(request))

    async def get_batch(self, caller_id: str, kb_id: str, batch_id: str) -> DocumentBatch:
        request = pb.GetDocumentBatchRequest(caller_id=caller_id, knowledge_base_id=kb_id, batch_id=batch_id)
        return _batch(await self._stub.GetDocumentBatch(request))

    async def delete_document(self, caller_id: str, kb_id: str, file_id: str) -> Document:
        request = pb.DeleteDocumentRequest(caller_id=caller_id, knowledge_base_id=kb_id, file_id=file_id)
        return _document(await self._stub.DeleteDocument(request))

    async def search(
        self,
        caller_id: str,
        kb_id: str,
        query: str,
        *,
        max_results: int,
        filters: dict[str, Any] | None,
        score_threshold: float,
    ) -> list[Passage]:
        request = pb.SearchRequest(
            caller_id=caller_id,
            knowledge_base_id=kb_id,
            query=query,
            max_results=max_results,
            filter_json=json.dumps(filters) if filters else "",
            score_threshold=score_threshold,
        )
        return [_passage(p) for p in (await self._stub.Search(request, timeout=SLOW_CALL_TIMEOUT_S)).passages]

    async def prepare_answer(self, caller_id: str, kb_id: str, question: str, top_k: int) -> PreparedAnswer:
        request = pb.PrepareAnswerRequest(
            caller_id=caller_id, knowledge_base_id=kb_id, question=question, top_k=top_k
        )
        prepared = await self._stub.PrepareAnswer(request, timeout=SLOW_CALL_TIMEOUT_S)
        return PreparedAnswer(
            model=prepared.model,
            system_prompt=prepared.system_prompt,
            user_prompt=prepared.user_prompt,
            passages=[_passage(p) for p in prepared.passages],
        )
