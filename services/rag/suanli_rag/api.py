"""The RagService gRPC servicer: wire messages to calls on the service and back."""

from __future__ import annotations

import json
from typing import Any, TypeAlias

import grpc

from suanli_common.errors import InvalidRequest
from suanli_common.proto.suanli.v1 import rag_pb2 as pb
from suanli_common.proto.suanli.v1 import rag_pb2_grpc
from suanli_rag.domain import Document, DocumentBatch, FileCounts, KnowledgeBase, NewKnowledgeBase
from suanli_rag.index import Passage
from suanli_rag.knowledge_bases import KnowledgeBases
from suanli_rag.retrieval import Retrieval

Context: TypeAlias = grpc.aio.ServicerContext


def _json_object(text: str, param: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidRequest(f"{param} is not JSON", param=param) from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{param} is a JSON object", param=param)
    return value


def file_counts_pb(counts: FileCounts) -> pb.FileCounts:
    return pb.FileCounts(
        in_progress=counts.in_progress, completed=counts.completed, failed=counts.failed, total=counts.total
    )


def document_batch_pb(batch: DocumentBatch) -> pb.DocumentBatch:
    message = pb.DocumentBatch(
        id=batch.id,
        knowledge_base_id=batch.knowledge_base_id,
        status=batch.status,
        file_counts=file_counts_pb(batch.file_counts),
    )
    message.created_at.FromDatetime(batch.created_at)
    return message


def knowledge_base_pb(kb: KnowledgeBase) -> pb.KnowledgeBase:
    message = pb.KnowledgeBase(
        id=kb.id,
        owner_id=kb.owner_id,
        name=kb.name,
        description=kb.description,
        model=kb.model,
        embedding_model=kb.embedding_model,
        chunk_max_tokens=kb.chunk_max_tokens,
        chunk_overlap_tokens=kb.chunk_overlap_tokens,
        metadata_json=json.dumps(kb.metadata),
        file_counts=file_counts_pb(kb.file_counts),
        usage_bytes=kb.usage_bytes,
        status=kb.status,
    )
    message.created_at.FromDatetime(kb.created_at)
    message.last_active_at.FromDatetime(kb.last_active_at)
    return message


def document_pb(document: Document) -> pb.Document:
    message = pb.Document(
        file_id=document.file_id,
        knowledge_base_id=document.knowledge_base_id,
        filename=document.filename,
        status=document.status.value,
        error_code=document.error_code,
        error_message=document.error_message,
        bytes=document.bytes,
        chunks=document.chunks,
        chunks_total=document.chunks_total,
        attributes_json=json.dumps(document.attributes),
    )
    message.created_at.FromDatetime(document.created_at)
    message.updated_at.FromDatetime(document.updated_at)
    return message


def passage_pb(passage: Passage) -> pb.Passage:
    return pb.Passage(
        file_id=passage.file_id,
        filename=passage.filename,
        chunk_index=passage.chunk_index,
        text=passage.text,
        score=passage.score,
        heading_path=passage.heading_path,
        page=passage.page or 0,
        attributes_json=json.dumps(passage.attributes),
    )


class RagServicer(rag_pb2_grpc.RagServiceServicer):
    def __init__(self, knowledge_bases: KnowledgeBases, retrieval: Retrieval) -> None:
        self._kbs = knowledge_bases
        self._retrieval = retrieval

    async def CreateKnowledgeBase(
        self, request: pb.CreateKnowledgeBaseRequest, context: Context
    ) -> pb.KnowledgeBase:
        metadata = _json_object(request.metadata_json, "metadata")
        new = NewKnowledgeBase(
            name=request.name,
            description=request.description,
            model=request.model,
            embedding_model=request.embedding_model,
            chunk_max_tokens=request.chunk_max_tokens,
            chunk_overlap_tokens=request.chunk_overlap_tokens,
            metadata={str(k): str(v) for k, v in metadata.items()},
        )
        kb = await self._kbs.create(
            request.caller_id, new, request.client_request_id, tuple(request.file_ids)
        )
        return knowledge_base_pb(kb)

    async def GetKnowledgeBase(
        self, request: pb.GetKnowledgeBaseRequest, context: Context
    ) -> pb.KnowledgeBase:
        return knowledge_base_pb(await self._kbs.get(request.caller_id, request.id))

    async def ListKnowledgeBases(
        self, request: pb.ListKnowledgeBasesRequest, context: Context
    ) -> pb.ListKnowledgeBasesResponse:
        kbs = await self._kbs.owned_by(request.caller_id)
        return pb.ListKnowledgeBasesResponse(knowledge_bases=[knowledge_base_pb(kb) for kb in kbs])

    async def DeleteKnowledgeBase(
        self, request: pb.DeleteKnowledgeBaseRequest, context: Context
    ) -> pb.KnowledgeBase:
        return knowledge_base_pb(await self._kbs.delete(request.caller_id, request.id))

    async def ReindexKnowledgeBase(
        self, request: pb.ReindexKnowledgeBaseRequest, context: Context
    ) -> pb.KnowledgeBase:
        kb = await self._kbs.reindex(
            request.caller_id, request.id, request.chunk_max_tokens, request.chunk_overlap_tokens
        )
        return knowledge_base_pb(kb)

    async def AddDocument(self, request: pb.AddDocumentRequest, context: Context) -> pb.Document:
        attributes = _json_object(request.attributes_json, "attributes")
        document = await self._kbs.add_document(
            request.caller_id, request.knowledge_base_id, request.file_id, attributes
        )
        return document_pb(document)

    async def GetDocument(self, request: pb.GetDocumentRequest, context: Context) -> pb.Document:
        document = await self._kbs.get_document(request.caller_id, request.knowledge_base_id, request.file_id)
        return document_pb(document)

    async def ListDocuments(
        self, request: pb.ListDocumentsRequest, context: Context
    ) -> pb.ListDocumentsResponse:
        documents = await self._kbs.list_documents(
            request.caller_id, request.knowledge_base_id, request.status, request.batch_id
        )
        return pb.ListDocumentsResponse(documents=[document_pb(d) for d in documents])

    async def DeleteDocument(self, request: pb.DeleteDocumentRequest, context: Context) -> pb.Document:
        document = await self._kbs.delete_document(
            request.caller_id, request.knowledge_base_id, request.file_id
        )
        return document_pb(document)

    async def CreateDocumentBatch(
        self, request: pb.CreateDocumentBatchRequest, context: Context
    ) -> pb.DocumentBatch:
        files = [(f.file_id, _json_object(f.attributes_json, "attributes")) for f in request.files]
        return document_batch_pb(
            await self._kbs.create_batch(request.caller_id, request.knowledge_base_id, files)
        )

    async def GetDocumentBatch(
        self, request: pb.GetDocumentBatchRequest, context: Context
    ) -> pb.DocumentBatch:
        return document_batch_pb(
            await self._kbs.get_batch(request.caller_id, request.knowledge_base_id, request.batch_id)
        )

    async def Search(self, request: pb.SearchRequest, context: Context) -> pb.SearchResponse:
        passages = await self._retrieval.search(
            request.caller_id,
            request.knowledge_base_id,
            request.query,
            max_results=request.max_results or 10,
            filter_json=request.filter_json,
            score_threshold=request.score_threshold,
        )
        return pb.SearchResponse(passages=[passage_pb(p) for p in passages])

    async def PrepareAnswer(self, request: pb.PrepareAnswerRequest, context: Context) -> pb.PreparedAnswer:
        prepared = await self._retrieval.prepare_answer(
            request.caller_id, request.knowledge_base_id, request.question, request.top_k or 5
        )
        return pb.PreparedAnswer(
            model=prepared.model,
            system_prompt=prepared.system_prompt,
            user_prompt=prepared.user_prompt,
            passages=[passage_pb(p) for p in prepared.passages],
        )
