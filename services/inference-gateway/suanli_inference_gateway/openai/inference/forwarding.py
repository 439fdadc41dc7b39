"""One inference request, sent on: checked against the caller's daily token quota and rate limits,
routed to the deployment serving its model, answered whole or streamed, and metered. The OpenAI
routes and the knowledge bases' `ask` both go through here."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.openai.inference.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)
from suanli_inference_gateway.openai.inference.service import Inference
from suanli_inference_gateway.openai.inference.tracing import InferenceSpan
from suanli_inference_gateway.openai.inference.upstream import ModelRename, StreamRelay, TokenUsage
from suanli_inference_gateway.openai.inference.usage import Usage


async def forward(
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
    if inference.quota is not None:  # first: a refused request spends none of the rate limits
        await inference.quota.check(principal.user_id)
    inference.limits.admit(principal)
    deployment = inference.routes.resolve(principal.user_id, model)
    url = f"{deployment.endpoint}/v1/{endpoint.replace('.', '/')}"
    payload: dict[str, Any] = body.model_dump(exclude_unset=True)
    payload["model"] = deployment.spec.engine_model
    rename = ModelRename(deployment.spec.engine_model, model)
    started = time.perf_counter()

    span = InferenceSpan(body, endpoint, deployment)

    def record(usage: TokenUsage, status_code: int) -> None:
        span.finish(usage, completed=status_code == 200)
        inference.limits.spend(principal, usage.total)
        if inference.quota is not None:
            inference.quota.spend(principal.user_id, usage.total)
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

    try:
        if not stream:
            with span.current():
                async with inference.routes.while_ready(deployment.id):
                    content, usage = await inference.upstream.call(url, payload)
            record(usage, 200)
            return Response(rename(content), media_type="application/json")

        # Always ask the engine for the usage, to meter it; the client gets it only if it asked.
        payload["stream_options"] = {**payload.get("stream_options", {}), "include_usage": True}
        with span.current():
            async with inference.routes.while_ready(deployment.id):
                response = await inference.upstream.open_stream(url, payload)
    except BaseException as exc:
        span.fail(exc)
        raise
    # 499 when the client went away before the end (nginx's name for it).
    relay = StreamRelay(
        response,
        client_wants_usage=client_wants_usage,
        on_end=lambda usage, completed: record(usage, 200 if completed else 499),
    )
    return EventStreamResponse(relay, rename)


DONE_EVENT = b"data: [DONE]\n\n"  # an OpenAI stream's last event


class EventStreamResponse(StreamingResponse):
    """The replica's events relayed to the client as they come: each chunk is one ASGI `send`, with
    no task group in between (Starlette's own `__call__` runs one per response to hear the client
    leave). A client that goes away is heard on `receive` and closes the replica's connection at
    once. `body_iterator` is the renamed events, for a route that wraps them (a knowledge base's
    answer)."""

    def __init__(self, relay: StreamRelay, rename: ModelRename) -> None:
        super().__init__(
            rename.each(relay.events()), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )
        self._relay = relay
        self._ended = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        watcher = asyncio.get_running_loop().create_task(self._abort_on_disconnect(receive))
        try:
            async for chunk in self.body_iterator:
                if self._ended:
                    continue  # nothing follows [DONE]; reading on ends the replica's response whole
                # The answer is whole at its [DONE] event: the client's response ends with it, not
                # after the replica's own end and the metering that follows it.
                self._ended = isinstance(chunk, bytes) and chunk.endswith(DONE_EVENT)
                await send({"type": "http.response.body", "body": chunk, "more_body": not self._ended})  # type: ignore[typeddict-item]
            if not self._ended:
                self._ended = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()

    async def _abort_on_disconnect(self, receive: Receive) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while (await receive())["type"] != "http.disconnect":
                pass
            if not self._ended:  # a server reports a finished response's connection as gone too
                self._relay.abort()
