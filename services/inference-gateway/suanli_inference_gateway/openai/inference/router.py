"""/v1/models, /v1/chat/completions, /v1/completions and /v1/embeddings: checked here, then sent to
the Ray Serve application of the deployment serving the model, with usage recorded per request."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from suanli_inference_gateway.authentication.dependency import require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.clients.deployments import Deployment
from suanli_inference_gateway.openai.inference.forwarding import forward
from suanli_inference_gateway.openai.inference.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelCard,
    ModelCardList,
)
from suanli_inference_gateway.openai.inference.service import Inference, require_inference

router = APIRouter(tags=["inference"])


@router.get("/models", response_model=ModelCardList)
async def list_models(
    principal: Principal = Depends(require_principal),
    inference: Inference = Depends(require_inference),
) -> ModelCardList:
    return ModelCardList(data=[_card(d) for d in inference.routes.usable_by(principal.user_id)])


@router.get("/models/{model:path}", response_model=ModelCard)
async def retrieve_model(
    model: str,
    principal: Principal = Depends(require_principal),
    inference: Inference = Depends(require_inference),
) -> ModelCard:
    return _card(inference.routes.resolve(principal.user_id, model))


def _card(deployment: Deployment) -> ModelCard:
    spec = deployment.spec
    return ModelCard(
        id=spec.served_model,
        created=int(deployment.created_at.timestamp()) if deployment.created_at else 0,
        owned_by="system" if spec.public else deployment.owner_id,
        root=spec.model_id,
        parent=spec.model_id if spec.adapter_id else None,
        max_model_len=spec.max_model_len or None,
        deployment_id=deployment.id,
    )


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    principal: Principal = Depends(require_principal),
    inference: Inference = Depends(require_inference),
) -> Response:
    return await forward(inference, principal, body, "chat.completions")


@router.post("/completions", response_model=None)
async def completions(
    body: CompletionRequest,
    principal: Principal = Depends(require_principal),
    inference: Inference = Depends(require_inference),
) -> Response:
    return await forward(inference, principal, body, "completions")


@router.post("/embeddings", response_model=None)
async def embeddings(
    body: EmbeddingRequest,
    principal: Principal = Depends(require_principal),
    inference: Inference = Depends(require_inference),
) -> Response:
    return await forward(inference, principal, body, "embeddings")
