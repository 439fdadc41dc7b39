"""usage.recorded as the gateway publishes it: buffered off the request's path, published in
batches on the real bus, each event once, kept through a bus that is away and published on
shutdown."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from faststream.nats import NatsBroker
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from suanli_common.bus import Event, declare_streams, decode_event, make_broker
from suanli_common.proto.suanli.v1.events_pb2 import UsageRecorded
from suanli_common.testing import NatsServer
from suanli_inference_gateway.openai.inference.usage import EventUsageSink, Usage


def usage(prompt_tokens: int, user_id: str = "user_1") -> Usage:
    return Usage(
        user_id=user_id,
        api_key_id="key_1",
        deployment_id="dep_1",
        model="smollm2",
        endpoint="chat.completions",
        prompt_tokens=prompt_tokens,
        completion_tokens=3,
        status_code=200,
        duration_ms=5.0,
        stream=True,
    )


async def stored(broker: NatsBroker, count: int) -> list[tuple[Event[UsageRecorded], dict[str, str]]]:
    """The usage.recorded events in the stream with their headers, expecting exactly `count`."""
    js = broker.config.connection_state.stream
    subscription = await js.pull_subscribe("events.usage.recorded", stream="EVENTS")
    found = []
    try:
        while len(found) < count:
            for message in await subscription.fetch(count - len(found), timeout=10):
                found.append((decode_event(message.data, UsageRecorded), dict(message.headers or {})))
                await message.ack()
        with pytest.raises(TimeoutError):  # and no more
            await subscription.fetch(1, timeout=0.3)
    finally:
        await subscription.unsubscribe()
    return found


async def test_records_are_published_in_a_batch_with_their_ids_and_trace(broker: NatsBroker) -> None:
    sink = EventUsageSink(broker, linger_s=0.05)
    sink.start()
    before = datetime.now(UTC)
    tracer = TracerProvider().get_tracer("test")
    carrier: dict[str, str] = {}
    with tracer.start_as_current_span("request"):
        sink.record(usage(1))
        TraceContextTextMapPropagator().inject(carrier)  # what a propagator would have sent
    for n in range(2, 6):
        sink.record(usage(n))
    events = await stored(broker, 5)
    await sink.aclose()

    assert [event.data.prompt_tokens for event, _ in events] == [1, 2, 3, 4, 5]
    for event, headers in events:
        assert headers["Nats-Msg-Id"] == event.id  # JetStream stores a re-sent event once
        assert headers["Suanli-Event-Type"] == "usage.recorded"
        assert (event.type, event.source, event.subject) == (
            "usage.recorded",
            "gateway",
            event.data.request_id,
        )
        assert event.data.request_id.startswith("req_") and event.data.user_id == "user_1"
        assert before <= event.time <= datetime.now(UTC)
    assert events[0][1]["traceparent"] == carrier["traceparent"]
    assert "traceparent" not in events[1][1]  # recorded outside any trace
    assert sink.buffered == 0


async def test_records_wait_for_a_bus_that_is_away_and_go_out_once(nats_server: NatsServer) -> None:
    broker = make_broker(nats_server.url, service="gateway")
    sink = EventUsageSink(broker, retry_s=0.05)
    sink.record(usage(1))
    sink.record(usage(2))
    assert await sink.flush() is False  # not connected yet: kept, to be sent again
    assert sink.buffered == 2
    await broker.connect()
    await declare_streams(broker)
    try:
        sink.start()
        sink.record(usage(3))
        events = await stored(broker, 3)
        assert sorted(event.data.prompt_tokens for event, _ in events) == [1, 2, 3]
        assert len({event.id for event, _ in events}) == 3
        await sink.aclose()
    finally:
        await broker.stop()


async def test_what_is_buffered_is_published_on_shutdown(broker: NatsBroker) -> None:
    sink = EventUsageSink(broker, linger_s=60.0)  # the flusher would wait a minute
    sink.start()
    for n in range(300):  # more than one batch
        sink.record(usage(n))
    await asyncio.sleep(0)
    await sink.aclose()
    assert sink.buffered == 0
    events = await stored(broker, 300)
    assert sorted(event.data.prompt_tokens for event, _ in events) == list(range(300))


async def test_a_bus_that_stays_away_at_shutdown_is_not_waited_for(nats_server: NatsServer) -> None:
    sink = EventUsageSink(make_broker(nats_server.url, service="gateway"), retry_s=0.05)
    sink.record(usage(1))
    started = asyncio.get_running_loop().time()
    await sink.aclose(timeout_s=0.3)
    assert asyncio.get_running_loop().time() - started < 2
    assert sink.buffered == 1
