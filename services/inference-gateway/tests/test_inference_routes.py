"""The gateway's OpenAI inference routes in front of a stand-in replica (an app speaking vLLM's
OpenAI dialect, served by uvicorn on a real port; the real Ray Serve + vLLM path runs in
tests/integration): checks at the edge, pass-through of answers and replica errors, streaming,
metering and rate limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from conftest import Gateway
from suanli_common.testing import free_port
from suanli_inference_gateway.clients.deployments import Deployment, DeploymentSpec, DeploymentStatus
from suanli_inference_gateway.openai.inference.limits import InferenceLimits
from suanli_inference_gateway.openai.inference.replica_client import ReplicaPool
from suanli_inference_gateway.openai.inference.routing import RoutingTable
from suanli_inference_gateway.openai.inference.service import Inference
from suanli_inference_gateway.openai.inference.upstream import Upstream
from suanli_inference_gateway.openai.inference.usage import Usage

USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


class ReplicaLog:
    """What the replica stand-in saw: the trace context of each request, and whether a stream
    was cut short by its client."""

    def __init__(self) -> None:
        self.traceparents: list[str | None] = []
        self.cut = asyncio.Event()


def replica(log: ReplicaLog | None = None) -> FastAPI:
    app = FastAPI()
    seen = log or ReplicaLog()

    @app.post("/{deployment_id}/v1/chat/completions")
    async def chat(deployment_id: str, request: Request) -> Any:
        seen.traceparents.append(request.headers.get("traceparent"))
        body = await request.json()
        if ":" in body["model"]:  # as Ray Serve LLM: a colon names a LoRA adapter of a base model
            base = body["model"].split(":")[0]
            return JSONResponse({"detail": f'Could not find base model with ID "{base}".'}, status_code=404)
        if body.get("max_tokens", 0) > 100:
            return JSONResponse(
                {
                    "error": {
                        "message": "max_tokens is too large: 2048 tokens at most",
                        "type": "BadRequestError",
                        "param": "max_tokens",
                        "code": 400,
                    }
                },
                status_code=400,
            )
        if not body.get("stream"):
            return {
                "id": "c1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Paris"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": USAGE,
            }
        assert body["stream_options"]["include_usage"] is True  # the gateway always meters

        async def endless() -> Any:
            try:
                while True:
                    yield b'data: {"choices":[{"index":0,"delta":{"content":"la"}}]}\n\n'
                    await asyncio.sleep(0.01)
            finally:
                seen.cut.set()

        if body.get("max_tokens") == 99:
            return StreamingResponse(endless(), media_type="text/event-stream")

        async def slow_to_end() -> Any:
            yield b'data: {"choices":[{"index":0,"delta":{"content":"Paris"}}]}\n\n'
            last = {"choices": [], "usage": USAGE}
            yield f"data: {json.dumps(last, separators=(',', ':'))}\n\ndata: [DONE]\n\n".encode()
            await asyncio.sleep(1.0)  # a server that takes its time to end the response after [DONE]

        if body.get("max_tokens") == 98:
            return StreamingResponse(slow_to_end(), media_type="text/event-stream")

        async def events() -> Any:
            for word in ("Pa", "ris"):
                chunk = {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "model": body["model"],
                    "choices": [{"index": 0, "delta": {"content": word}}],
                }
                yield f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n".encode()
            last = {"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": USAGE}
            yield f"data: {json.dumps(last, separators=(',', ':'))}\n\ndata: [DONE]\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


class RecordingSink:
    def __init__(self) -> None:
        self.records: list[Usage] = []

    def record(self, usage: Usage) -> None:
        self.records.append(usage)


@contextlib.asynccontextmanager
async def serve_replica(app: FastAPI | None = None) -> AsyncIterator[str]:
    """Serves the replica stand-in (or `app`) on a free port while the caller iterates; its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app or replica(), host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
def replica_log() -> ReplicaLog:
    return ReplicaLog()


@pytest.fixture
async def replica_url(replica_log: ReplicaLog) -> AsyncIterator[str]:
    async with serve_replica(replica(replica_log)) as url:
        yield url


def public_routes(replica_url: str) -> RoutingTable:
    """A routing table with one public, ready deployment of "smollm2" on the replica stand-in."""
    routes = RoutingTable()
    routes.replace(
        [
            Deployment(
                id="dep_1",
                owner_id="system",
                spec=DeploymentSpec(model_id="smollm2", model_path="/m", served_model="smollm2", public=True),
                status=DeploymentStatus.ready,
                endpoint=f"{replica_url}/dep_1",
                updated_at=datetime.now(UTC),
            )
        ]
    )
    return routes


@pytest.fixture
async def inference(gateway: Gateway, replica_url: str) -> Any:
    routes = public_routes(replica_url)
    sink = RecordingSink()
    pool = ReplicaPool()
    gateway.deps.inference = Inference(
        routes=routes, upstream=Upstream(pool), limits=InferenceLimits(3, 1_000_000), usage=sink
    )
    yield sink
    await pool.aclose()


async def key(gateway: Gateway) -> dict[str, str]:
    created = await gateway.new_api_key(await gateway.sign_in())
    return {"Authorization": f"Bearer {created['key']}"}


CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "Capital of France?"}]}


async def test_an_answer_passes_through_and_its_usage_is_recorded(gateway: Gateway, inference: Any) -> None:
    headers = await key(gateway)
    answer = await gateway.http.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "Paris"
    [usage] = inference.records
    assert (usage.prompt_tokens, usage.completion_tokens, usage.deployment_id) == (7, 3, "dep_1")
    assert usage.endpoint == "chat.completions" and usage.api_key_id
    models = await gateway.http.get("/v1/models", headers=headers)
    assert [m["id"] for m in models.json()["data"]] == ["smollm2"]


async def test_a_stream_shows_usage_only_to_a_client_that_asked(gateway: Gateway, inference: Any) -> None:
    headers = await key(gateway)
    plain = await gateway.http.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers)
    assert plain.status_code == 200
    assert '"Pa"' in plain.text and '"ris"' in plain.text and "usage" not in plain.text
    assert plain.text.endswith("data: [DONE]\n\n")
    asked = await gateway.http.post(
        "/v1/chat/completions",
        json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
        headers=headers,
    )
    assert '"usage":{"prompt_tokens":7' in asked.text
    assert [(u.completion_tokens, u.stream, u.status_code) for u in inference.records] == [(3, True, 200)] * 2


async def test_a_fine_tune_is_served_under_a_colon_free_name_and_answers_under_its_own(
    gateway: Gateway, inference: Any, replica_url: str
) -> None:
    fine_tune = "ft:smollm2:identity:job_1"
    routes = gateway.deps.inference.routes  # type: ignore[union-attr]
    routes.replace(
        [
            Deployment(
                id="dep_2",
                owner_id="system",
                spec=DeploymentSpec(
                    model_id=fine_tune, model_path="/ft", served_model=fine_tune, public=True
                ),
                status=DeploymentStatus.ready,
                endpoint=f"{replica_url}/dep_2",
                updated_at=datetime.now(UTC),
            )
        ]
    )
    headers = await key(gateway)
    chat = {**CHAT, "model": fine_tune}
    answer = await gateway.http.post("/v1/chat/completions", json=chat, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == fine_tune
    streamed = await gateway.http.post("/v1/chat/completions", json={**chat, "stream": True}, headers=headers)
    assert streamed.status_code == 200, streamed.text
    assert streamed.text.count(f'"model":"{fine_tune}"') == 2 and "ft--" not in streamed.text


async def test_a_replica_error_keeps_its_status_message_and_param(gateway: Gateway, inference: Any) -> None:
    answer = await gateway.http.post(
        "/v1/chat/completions", json={**CHAT, "max_tokens": 5000}, headers=await key(gateway)
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "max_tokens is too large: 2048 tokens at most"
    assert answer.json()["error"]["param"] == "max_tokens"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({**CHAT, "model": "gpt-9"}, 404, "model"),
        ({**CHAT, "messages": []}, 400, "messages"),
        ({**CHAT, "n": 0}, 400, "n"),
        ({**CHAT, "top_p": 1.5}, 400, "top_p"),
        ({"model": "smollm2", "prompt": []}, 400, "prompt"),
    ],
)
async def test_bad_requests_never_reach_the_replica(
    gateway: Gateway, inference: Any, body: dict[str, Any], status: int, param: str
) -> None:
    path = "/v1/completions" if "prompt" in body else "/v1/chat/completions"
    answer = await gateway.http.post(path, json=body, headers=await key(gateway))
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["param"] == param
    assert inference.records == []


async def test_requests_over_the_keys_limit_get_429(gateway: Gateway, inference: Any) -> None:
    headers = await key(gateway)
    for _ in range(3):
        assert (
            await gateway.http.post("/v1/chat/completions", json=CHAT, headers=headers)
        ).status_code == 200
    limited = await gateway.http.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"


async def test_inference_needs_credentials(gateway: Gateway, inference: Any) -> None:
    answer = await gateway.http.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 401


async def test_a_client_that_goes_away_stops_the_generation(
    gateway: Gateway, inference: Any, replica_log: ReplicaLog
) -> None:
    headers = await key(gateway)
    async with serve_replica(gateway.app) as url, httpx.AsyncClient(base_url=url) as client:
        body = {**CHAT, "stream": True, "max_tokens": 99}
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as streamed:
            assert streamed.status_code == 200
            assert b'"la"' in await anext(streamed.aiter_raw())
        await asyncio.wait_for(replica_log.cut.wait(), 5)  # the replica stopped generating
        for _ in range(100):
            if inference.records:
                break
            await asyncio.sleep(0.02)
    assert [(u.stream, u.status_code) for u in inference.records] == [(True, 499)]


async def test_a_stream_ends_for_the_client_at_its_done_event(gateway: Gateway, inference: Any) -> None:
    headers = await key(gateway)
    async with serve_replica(gateway.app) as url, httpx.AsyncClient(base_url=url) as client:
        started = time.perf_counter()
        body = {**CHAT, "stream": True, "max_tokens": 98}
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as streamed:
            text = (await streamed.aread()).decode()
        # Whole at [DONE], without waiting for the replica's own end a second later.
        assert time.perf_counter() - started < 0.8
        assert text.endswith("data: [DONE]\n\n") and '"Paris"' in text and "usage" not in text
        for _ in range(100):  # metered once the replica's response is over, as a whole answer
            if inference.records:
                break
            await asyncio.sleep(0.05)
    assert [(u.stream, u.status_code, u.completion_tokens) for u in inference.records] == [(True, 200, 3)]


async def test_the_callers_trace_goes_on_to_the_replica_and_the_route_is_measured(
    gateway: Gateway, inference: Any, replica_log: ReplicaLog
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {**await key(gateway), "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    for body in (CHAT, {**CHAT, "stream": True}):
        answer = await gateway.http.post("/v1/chat/completions", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
    assert len(replica_log.traceparents) == 2
    assert all(t is not None and t.split("-")[1] == trace_id for t in replica_log.traceparents)
    metrics = (await gateway.http.get("/metrics")).text
    assert (
        'suanli_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 2.0' in metrics
    )
    assert (
        'suanli_http_request_duration_seconds_count{method="POST",route="/v1/chat/completions"} 2.0'
        in metrics
    )


@pytest.mark.parametrize(
    ("content", "content_type", "code"),
    [
        (b"{not json", "application/json", "invalid_json"),
        (b"", "application/json", "invalid_json"),
        (b"[1, 2]", "application/json", "invalid_json"),
        (b'{"model": "smollm2"}', "text/plain", "invalid_json"),
        (b'{"model": "smollm2", "messages": [{"role": "robot"}]}', None, "invalid_value"),
    ],
)
async def test_a_body_that_is_not_a_request_is_a_400_error_object(
    gateway: Gateway, inference: Any, content: bytes, content_type: str | None, code: str
) -> None:
    headers = await key(gateway)
    if content_type:
        headers["content-type"] = content_type
    answer = await gateway.http.post("/v1/chat/completions", content=content, headers=headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["type"] == "invalid_request_error"


async def test_the_inference_routes_stay_in_the_openapi_document_and_other_methods_get_405(
    gateway: Gateway, inference: Any
) -> None:
    paths = (await gateway.http.get("/api/v1/openapi.json")).json()["paths"]
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"} <= set(paths)
    assert "messages" in str(paths["/v1/chat/completions"]) or "ChatCompletionRequest" in str(
        paths["/v1/chat/completions"]
    )
    wrong = await gateway.http.get("/v1/chat/completions", headers=await key(gateway))
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
