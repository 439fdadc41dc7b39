"""`ask`: retrieve passages from the knowledge base (the rag service), then ask the chat model
with the grounded prompt through the same path as /v1/chat/completions, so the answer is rate
limited and metered like any request of the caller. With nothing relevant retrieved, the model
is not asked at all: the answer says so instead of inventing one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator

from fastapi.responses import Response, StreamingResponse

from suanli_common.errors import FailedPrecondition, NotFound
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.clients.rag import PreparedAnswer, RagApi
from suanli_inference_gateway.openai.inference.forwarding import forward
from suanli_inference_gateway.openai.inference.protocol import ChatCompletionRequest, ChatMessage
from suanli_inference_gateway.openai.inference.service import Inference
from suanli_inference_gateway.platform.knowledge_bases.protocol import (
    AnswerUsage,
    AskRequest,
    AskResponse,
    Citation,
)

NOTHING_FOUND = (
    "The knowledge base has no passage about this question, so it cannot be answered from its documents."
)


def _sse(payload: dict[str, object]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def _citations(prepared: PreparedAnswer, answer: str) -> list[Citation]:
    return [Citation.of(n, p, answer) for n, p in enumerate(prepared.passages, start=1)]


async def ask(
    rag: RagApi, inference: Inference | None, principal: Principal, kb_id: str, body: AskRequest
) -> Response:
    prepared = await rag.prepare_answer(principal.user_id, kb_id, body.question, body.top_k)
    if not prepared.passages:
        return _nothing_found(kb_id, body.stream)
    model = body.model or prepared.model
    if inference is None:
        raise FailedPrecondition("inference is not available on this gateway", param="model")
    chat = ChatCompletionRequest(
        model=model,
        stream=body.stream,
        messages=[
            ChatMessage(role="system", content=prepared.system_prompt),
            ChatMessage(role="user", content=prepared.user_prompt),
        ],
        temperature=body.temperature if body.temperature is not None else 0.0,
        max_tokens=body.max_tokens,
    )
    try:
        response = await forward(inference, principal, chat, "chat.completions")
    except NotFound as exc:
        if exc.param != "model":
            raise
        raise FailedPrecondition(
            f"The knowledge base answers with the model `{model}`, which is not deployed for you: "
            "deploy it (POST /api/v1/deployments), or pass another deployed `model`.",
            param="model",
            code="model_not_deployed",
        ) from None
    if isinstance(response, StreamingResponse):
        return StreamingResponse(
            _stream(kb_id, model, prepared, response.body_iterator),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )
    completion = json.loads(bytes(response.body))
    answer = str(completion["choices"][0]["message"].get("content") or "")
    usage = completion.get("usage") or {}
    result = AskResponse(
        knowledge_base_id=kb_id,
        answer=answer,
        found=True,
        model=model,
        citations=_citations(prepared, answer),
        usage=AnswerUsage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            total_tokens=int(usage.get("total_tokens") or 0),
        ),
    )
    return Response(result.model_dump_json(), media_type="application/json")


async def _stream(
    kb_id: str, model: str, prepared: PreparedAnswer, chunks: AsyncIterable[str | bytes | memoryview]
) -> AsyncIterator[bytes]:
    """The citations first (the passages are known before the model says a word), then the
    model's chat.completion.chunk events as they come, then `[DONE]`."""
    yield _sse(
        {
            "object": "knowledge_base.citations",
            "knowledge_base_id": kb_id,
            "model": model,
            "citations": [c.model_dump() for c in _citations(prepared, "")],
        }
    )
    async for chunk in chunks:
        yield (
            chunk
            if isinstance(chunk, bytes)
            else bytes(chunk)
            if isinstance(chunk, memoryview)
            else chunk.encode()
        )


def _nothing_found(kb_id: str, stream: bool) -> Response:
    result = AskResponse(knowledge_base_id=kb_id, answer=NOTHING_FOUND, found=False, model=None, citations=[])
    if not stream:
        return Response(result.model_dump_json(), media_type="application/json")

    async def events() -> AsyncIterator[bytes]:
        yield _sse({"object": "knowledge_base.citations", "knowledge_base_id": kb_id, "citations": []})
        yield _sse({"object": "knowledge_base.answer", **result.model_dump()})
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-cache"})
