"""The gateway's /metrics: requests by route template (never the raw path), and tokens counted where
an inference request's usage is recorded."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from suanli_common.bus import Event, declare_streams, make_broker, subscribe_events
from suanli_common.proto.suanli.v1.events_pb2 import UsageRecorded
from suanli_common.testing import NatsServer
from suanli_inference_gateway.metrics import TokenMetrics
from suanli_inference_gateway.openai.inference.usage import EventUsageSink, Usage

if TYPE_CHECKING:
    from conftest import Gateway


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def test_requests_are_counted_by_route_template(gateway: Gateway) -> None:
    for job_id in ("job_a", "job_b"):  # two paths, one route
        assert (await gateway.http.get(f"/api/v1/jobs/{job_id}")).status_code == 401
    assert (await gateway.http.get("/healthz")).status_code == 200
    assert (await gateway.http.get("/no/such/page")).status_code == 404
    assert (await gateway.http.request("BREW", "/healthz")).status_code == 405

    scraped = await gateway.http.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    requests = samples(scraped.text, "suanli_http_requests_total")
    job = (("method", "GET"), ("route", "/api/v1/jobs/{job_id}"), ("status", "401"))
    assert requests[job] == 2
    assert requests[(("method", "GET"), ("route", "/healthz"), ("status", "200"))] == 1
    assert requests[(("method", "GET"), ("route", "none"), ("status", "404"))] == 1
    assert requests[(("method", "other"), ("route", "/healthz"), ("status", "405"))] == 1
    assert not [labels for labels in requests if "job_a" in str(labels) or "/metrics" in str(labels)]
    durations = samples(scraped.text, "suanli_http_request_duration_seconds_count")
    assert durations[(("method", "GET"), ("route", "/api/v1/jobs/{job_id}"))] == 2
    # /metrics is no API of the OpenAPI document.
    openapi = (await gateway.http.get("/api/v1/openapi.json")).json()
    assert "/metrics" not in openapi["paths"]


def usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(
        user_id="user_1",
        api_key_id="key_1",
        deployment_id="dep_1",
        model="smollm2",
        endpoint="chat.completions",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        status_code=200,
        duration_ms=5.0,
        stream=False,
    )


async def test_tokens_are_counted_where_usage_is_recorded(nats_server: NatsServer) -> None:
    registry = CollectorRegistry()
    broker = make_broker(nats_server.url, service="gateway", metrics=registry)
    published: asyncio.Queue[UsageRecorded] = asyncio.Queue()

    async def on_usage(event: Event[UsageRecorded]) -> None:
        await published.put(event.data)

    subscribe_events(broker, "usage.recorded", UsageRecorded, on_usage)
    await broker.connect()
    await declare_streams(broker)
    await broker.start()
    try:
        sink = EventUsageSink(broker, TokenMetrics.register(registry))
        sink.start()
        for prompt, completion in ((12, 30), (8, 2)):
            sink.record(usage(prompt, completion))
        first = await asyncio.wait_for(published.get(), 10)
        assert first.model == "smollm2"
        await sink.aclose()
    finally:
        await broker.stop()
    assert registry.get_sample_value("suanli_tokens_total", {"model": "smollm2", "direction": "input"}) == 20
    assert registry.get_sample_value("suanli_tokens_total", {"model": "smollm2", "direction": "output"}) == 32
