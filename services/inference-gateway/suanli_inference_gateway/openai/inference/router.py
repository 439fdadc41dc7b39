"""/v1/models, /v1/chat/completions, /v1/completions and /v1/embeddings: checked here, then sent to
the Ray Serve application of the deployment serving the model, with usage recorded per request."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response, StreamingResponse

from suanli_inference_gateway.authentication.dependency import require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.clients.deployments import Deployment
from suanli_inference_gateway.openai.inference.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelCard,
    ModelCardList,
)
from suanli_inference_gateway.openai.inference.service import Inference, require_inference
from suanli_inference_gateway.openai.inference.upstream import StreamRelay, TokenUsage
from suanli_inference_gateway.openai.inference.usage import Usage

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
    return await _forward(inference, principal, body, "chat.completions")


@router.post("/completions", response_model=None)
async def completions(
    body: CompletionRequest,
    principal: Principal = Depends(require_principal),
    inference: Inference = Depends(require_inference),
) -> Response:
    return await _forward(inference, principal, body, "completions")


@router.post("/embeddings", response_model=None)
async def embeddings(
    body: EmbeddingRequest,
    principal: Principal = Depends(require_principal),
    inference: Inference = Depends(require_inference),
) -> Response:
    return await _forward(inference, principal, body, "embeddings")


async def _forward(
    inference: Inference,
    principal: Principal,
    body: ChatCompletionRequest | CompletionRequest | EmbeddingRequest,
    endpoint: str,
) -> Response:
    model = body.model
    stream = client_wants_usage = False
    if not isinstance(body, EmbeddingRequest):
        stream = body.stream
        client_wants_usage = bool(body.stream_options and body.stream_options.include_usage)
    inference.limits.admit(principal)
    deployment = inference.routes.resolve(principal.user_id, model)
    url = f"{deployment.endpoint}/v1/{endpoint.replace('.', '/')}"
    payload: dict[str, Any] = body.model_dump(exclude_unset=True)
    started = time.perf_counter()

    def record(usage: TokenUsage, status_code: int) -> None:
        inference.limits.spend(principal, usage.total)
        inference.usage.record(
            Usage(
                user_id=principal.user_id,
                api_key_id=principal.key_id or "",
                deployment_id=deployment.id,
                model=model,
                endpoint=endpoint,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                status_code=status_code,
                duration_ms=(time.perf_counter() - started) * 1000,
                stream=stream,
            )
        )

    if not stream:
        content, usage = await inference.upstream.call(url, payload)
        record(usage, 200)
        return Response(content, media_type="application/json")

    # Always ask the engine for the usage, to meter it; the client gets it only if it asked.
    payload["stream_options"] = {**payload.get("stream_options", {}), "include_usage": True}
    response = await inference.upstream.open_stream(url, payload)
    # 499 when the client went away before the end (nginx's name for it).
    relay = StreamRelay(
        response,
        client_wants_usage=client_wants_usage,
        on_end=lambda usage, completed: record(usage, 200 if completed else 499),
    )
    return StreamingResponse(
        relay.events(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
    )
