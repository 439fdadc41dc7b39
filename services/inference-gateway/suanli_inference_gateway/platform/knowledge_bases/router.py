"""/api/v1/knowledge-bases: ask a knowledge base, re-index it. Creating and filling one is the
OpenAI vector-store API (/v1/vector_stores): a knowledge base is a vector store, same id."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from suanli_inference_gateway.authentication.dependency import require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.clients.rag import RagApi
from suanli_inference_gateway.dependencies import gateway_deps, require_rag
from suanli_inference_gateway.openai.vector_stores.protocol import VectorStoreObject
from suanli_inference_gateway.platform.knowledge_bases.answers import ask
from suanli_inference_gateway.platform.knowledge_bases.protocol import AskRequest, AskResponse, ReindexRequest

router = APIRouter(prefix="/knowledge-bases", tags=["knowledge bases"])


@router.post(
    "/{knowledge_base_id}/ask",
    response_model=AskResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "With stream: SSE events"}},
)
async def ask_knowledge_base(
    knowledge_base_id: str,
    body: AskRequest,
    request: Request,
    principal: Principal = Depends(require_principal),
    rag: RagApi = Depends(require_rag),
) -> Response:
    return await ask(rag, gateway_deps(request).inference, principal, knowledge_base_id, body)


@router.post("/{knowledge_base_id}/reindex", response_model=VectorStoreObject)
async def reindex_knowledge_base(
    knowledge_base_id: str,
    body: ReindexRequest,
    principal: Principal = Depends(require_principal),
    rag: RagApi = Depends(require_rag),
) -> VectorStoreObject:
    kb = await rag.reindex(principal.user_id, knowledge_base_id, body.chunk_size, body.chunk_overlap)
    return VectorStoreObject.of(kb)
