"""The bus against a real nats-server: streams, typed events, de-duplication, redelivery."""

from __future__ import annotations

import asyncio
import logging

import pytest

from suanli_common.bus import (
    EventPublisher,
    declare_streams,
    decode_event,
    encode_event,
    make_broker,
    subscribe_events,
)
from suanli_common.proto.suanli.v1.events_pb2 import ApiKeyRevoked, UserCreated
from suanli_common.testing import NatsServer


def test_envelope_round_trip() -> None:
    envelope = encode_event("user.created", "user_1", UserCreated(user_id="user_1"), source="auth")
    event = decode_event(envelope.SerializeToString(), UserCreated)
    assert event.id == envelope.id and event.id.startswith("evt_")
    assert event.source == "auth" and event.subject == "user_1"
    assert event.data.user_id == "user_1"


def test_decode_rejects_the_wrong_payload_type() -> None:
    envelope = encode_event("user.created", "u", UserCreated(user_id="u"), source="auth")
    try:
        decode_event(envelope.SerializeToString(), ApiKeyRevoked)
    except ValueError as exc:
        assert "UserCreated" in str(exc)
    else:
        raise AssertionError("a payload of another type was accepted")


async def test_durable_subscriber_receives_each_event_once(nats_server: NatsServer) -> None:
    broker = make_broker(nats_server.url, service="test")
    received: asyncio.Queue[str] = asyncio.Queue()

    async def on_created(event: object) -> None:
        await received.put(event.data.email)  # type: ignore[attr-defined]

    subscribe_events(broker, "user.created", UserCreated, on_created, durable="test-users")
    await broker.connect()
    await declare_streams(broker)
    await declare_streams(broker)  # idempotent: every service declares at start
    await broker.start()
    try:
        publisher = EventPublisher(broker, source="test")
        payload = UserCreated(user_id="user_1", email="a@example.com")
        await publisher.publish("user.created", "user_1", payload, event_id="evt_same")
        await publisher.publish("user.created", "user_1", payload, event_id="evt_same")
        assert await asyncio.wait_for(received.get(), 10) == "a@example.com"
        await asyncio.sleep(0.5)
        assert received.empty(), "a re-published event (same id) was delivered twice"
    finally:
        await broker.stop()


async def test_failed_handler_gets_the_event_again(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    broker = make_broker(nats_server.url, service="test")
    attempts: list[str] = []
    done = asyncio.Event()

    async def flaky(event: object) -> None:
        attempts.append(event.id)  # type: ignore[attr-defined]
        if len(attempts) == 1:
            raise RuntimeError("first delivery fails")
        done.set()

    subscribe_events(broker, "key.revoked", ApiKeyRevoked, flaky, durable="test-flaky")
    await broker.connect()
    await declare_streams(broker)
    await broker.start()
    try:
        with caplog.at_level(logging.ERROR):
            await EventPublisher(broker, "test").publish(
                "key.revoked", "key_1", ApiKeyRevoked(key_id="key_1")
            )
            await asyncio.wait_for(done.wait(), 20)
        assert len(attempts) == 2 and attempts[0] == attempts[1]
        # A handler's failure still reaches the service's log, with its traceback.
        (failure,) = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], RuntimeError)]
        assert failure.name == "suanli.faststream" and failure.levelno == logging.ERROR
    finally:
        await broker.stop()


def test_the_broker_log_leaves_out_only_the_restarts_after_an_idle_fetch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_broker("nats://127.0.0.1:4222", service="test")  # sets up the logger it hands FastStream
    log = logging.getLogger("suanli.faststream")
    retrying = "Task-7 raised an exception, retrying..."
    with caplog.at_level(logging.INFO):
        log.info("callback for Task-7 is being executed...")
        log.error(retrying, exc_info=TimeoutError())  # what nats-py raises
        log.error(retrying, exc_info=ConnectionError("nats is gone"))
        log.warning("Connection closed")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, retrying),
        (logging.WARNING, "Connection closed"),
    ]
    assert isinstance(caplog.records[0].exc_info[1], ConnectionError)  # type: ignore[index]
