"""/v1/vector_stores: adapters from OpenAI's Vector Stores API to the rag service."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Header, Query, Request

from suanli_common.errors import FailedPrecondition
from suanli_inference_gateway.authentication.dependency import require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.clients.rag import Document, NewKnowledgeBase, RagApi
from suanli_inference_gateway.dependencies import require_rag
from suanli_inference_gateway.openai.paging import AFTER, LIMIT, page
from suanli_inference_gateway.openai.vector_stores.protocol import (
    SearchRequest,
    SearchResult,
    SearchResultsPage,
    VectorStoreCreate,
    VectorStoreDeleted,
    VectorStoreFileBatchCreate,
    VectorStoreFileBatchObject,
    VectorStoreFileCreate,
    VectorStoreFileDeleted,
    VectorStoreFileList,
    VectorStoreFileObject,
    VectorStoreList,
    VectorStoreObject,
)
from suanli_inference_gateway.platform.protocol import client_request_id
from suanli_inference_gateway.settings import GatewaySettings

router = APIRouter(prefix="/vector_stores", tags=["vector stores"])


@router.post("", response_model=VectorStoreObject)
async def create_vector_store(
    body: VectorStoreCreate,
    request: Request,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
    principal: Principal = Depends(require_principal),
    rag: RagApi = Depends(require_rag),
) -> VectorStoreObject:
    settings: GatewaySettings = request.app.state.settings
    static = body.chunking_strategy.static if body.chunking_strategy else None
    new = NewKnowledgeBase(
        name=body.name or "",
        description=body.description or "",
        model=body.model or settings.seed_model_id,
        embedding_model=body.embedding_model or "",
        chunk_max_tokens=static.max_chunk_size_tokens if static else 0,
        chunk_overlap_tokens=static.chunk_overlap_tokens if static else 0,
        metadata=body.metadata or {},
        file_ids=tuple(body.file_ids),
    )
    kb = await rag.create_knowledge_base(principal.user_id, new, client_request_id(idempotency_key))
    return VectorStoreObject.of(kb)


ORDER = Query("desc", description="By creation time: asc or desc")
StatusFilter = Literal["in_progress", "completed", "failed", "cancelled"] | None
STATUS_FILTER = Query(None, description="Only files in this status")


@router.get("", response_model=VectorStoreList)
async def list_vector_stores(
    limit: int = LIMIT,
    after: str | None = AFTER,
    order: Literal["asc", "desc"] = ORDER,
    principal: Principal = Depends(require_principal),
    rag: RagApi = Depends(require_rag),
) -> VectorStoreList:
    stores = [VectorStoreObject.of(kb) for kb in await rag.list_knowledge_bases(principal.user_id)]
    stores.sort(key=lambda s: (s.created_at, s.id), reverse=order == "desc")
    chosen, has_more = page(stores, after, limit)
    return VectorStoreList(
        data=chosen,
        first_id=chosen[0].id if chosen else None,
        last_id=chosen[-1].id if chosen else None,
        has_more=has_more,
    )


@router.get("/{vector_store_id}", response_model=VectorStoreObject)
async def retrieve_vector_store(
    vector_store_id: str,
    principal: Principal = Depends(require_principal),
    rag: RagApi = Depends(require_rag),
) -> VectorStoreObject:
    return VectorStoreObject.of(await rag.get_knowledge_base(principal.user_id, vector_store_id))


@router.delete("/{vector_store_id}", response_model=VectorStoreDeleted)
async def delete_vector_store(
    vector_store_id: str,
    principal: Principal = Depends(require_principal),
    rag: RagApi = Depends(require_rag),
) -> VectorStoreDeleted:
    deleted = await rag.delete_knowledge_base(principal.user_id, vector_store_id)
    return VectorStoreDeleted(id=deleted.id)


@router.post("/{vector_store_id}/files", response_model=VectorStoreFileObject)
async def create_vector_store_file(
    vector_store_id: str,
    body: VectorStoreFileCreate,
    principal: Principal = Depends(require_principal),
    rag: RagApi = Depends(require_rag),
) -> VectorStoreFileObject:
    document = await rag.add_document(principal.user_id, vector_store_id, body.file_id, body.attributes or {})
    return VectorStoreFileObject.of(document)


@router.get("/{vector_store_id}/files", response_model=VectorStoreFileList)
async def list_vector_store_files(
    vector_store_id: str,
    filter: StatusFilter = STATUS_FILTER,
    limit: int = LIMIT,
    after: str | None = AFTER,
    order: Literal["asc", "desc"] = ORDER,
    principal: Principal = Depends(require_principal),
    rag: RagApi = Depends(require_rag),
) -> VectorStoreFileList:
    documents = await rag.list_documents(principal.user_id, vector_store_id, filter or "")
    return _file_page(documents, limit, after, order)


def _file_page(documents: list[Document], limit: int, after: str | None, order: str) -> VectorStoreFileList:
    files = sorted(
        (VectorStoreFileObject.of(d) for d in documents),
        key=lambda f: (f.created_at, f.id),
        reverse=order == "desc",
    )
    chosen, has_more = page(files, after, limit)
    return VectorStoreFileList(
        data=chosen,
        first_id=chosen[0].id if chosen else None,
        last_id=chosen[-1].id if chosen else None,
        has_more=has_more,
    )


@router.get("/{vector_store_id}/files/{file_id}", response_model=VectorStoreFileObject)
async def retrieve_vector_store_file(
    vector_store_id: str,
    file_id: str,
    principal: Principal = Depends(require_principal),
    rag: RagApi = Depends(require_rag),
) -> VectorStoreFileObject:
    return VectorStoreFileObject.of(await rag.get_document(principal.user_id, vector_store_id, file_id))


@router.delete("/{vector_store_id}/files/{file_id}", response_model=VectorStoreFileDeleted)
async def delete_vector_store_file(
    vector_store_id: str,
    file_id: str,
    principal: Principal = Depends(require_principal),
    rag: RagApi = Depends(require_rag),
) -> VectorStoreFileDeleted:
    deleted = await rag.delete_document(principal.user_id, vector_store_id, file_id)
    return VectorStoreFileDeleted(id=deleted.file_id)


@router.post("/{vector_store_id}/search", response_model=SearchResultsPage)
async def search_vector_store(
    vector_store_id: str,
    body: SearchRequest,
    principal: Principal = Depends(require_principal),
    rag: RagApi = Depends(require_rag),
) -> SearchResultsPage:
    passages = await rag.search(
        principal.user_id,
        vector_store_id,
        " ".join(body.queries),
        max_results=body.max_num_results,
        filters=body.filters,
        score_threshold=body.ranking_options.score_threshold if body.ranking_options else 0.0,
    )
    return SearchResultsPage(search_query=body.queries, data=[SearchResult.of(p) for p in passages])


@router.post("/{vector_store_id}/file_batches", response_model=VectorStoreFileBatchObject)
async def create_file_batch(
    vector_store_id: str,
    body: VectorStoreFileBatchCreate,
    principal: Principal = Depends(require_principal),
    rag: RagApi = Depends(require_rag),
) -> VectorStoreFileBatchObject:
    batch = await rag.create_batch(principal.user_id, vector_store_id, body.pairs())
    return VectorStoreFileBatchObject.of(batch)


@router.get("/{vector_store_id}/file_batches/{batch_id}", response_model=VectorStoreFileBatchObject)
async def retrieve_file_batch(
    vector_store_id: str,
    batch_id: str,
    principal: Principal = Depends(require_principal),
    rag: RagApi = Depends(require_rag),
) -> VectorStoreFileBatchObject:
    return VectorStoreFileBatchObject.of(await rag.get_batch(principal.user_id, vector_store_id, batch_id))


@router.post("/{vector_store_id}/file_batches/{batch_id}/cancel", response_model=VectorStoreFileBatchObject)
async def cancel_file_batch(
    vector_store_id: str,
    batch_id: str,
    principal: Principal = Depends(require_principal),
    rag: RagApi = Depends(require_rag),
) -> VectorStoreFileBatchObject:
    await rag.get_batch(principal.user_id, vector_store_id, batch_id)  # 404 before 409
    raise FailedPrecondition(
        "indexing is not cancelled here: delete the batch's files from the vector store instead",
        code="cancel_not_supported",
    )


@router.get("/{vector_store_id}/file_batches/{batch_id}/files", response_model=VectorStoreFileList)
async def list_file_batch_files(
    vector_store_id: str,
    batch_id: str,
    filter: StatusFilter = STATUS_FILTER,
    limit: int = LIMIT,
    after: str | None = AFTER,
    order: Literal["asc", "desc"] = ORDER,
    principal: Principal = Depends(require_principal),
    rag: RagApi = Depends(require_rag),
) -> VectorStoreFileList:
    await rag.get_batch(principal.user_id, vector_store_id, batch_id)
    documents = await rag.list_documents(principal.user_id, vector_store_id, filter or "", batch_id)
    return _file_page(documents, limit, after, order)
