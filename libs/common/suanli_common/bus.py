"""The NATS/JetStream layer, on FastStream.

Four streams carry everything: EVENTS (facts that happened, kept for replay), WORK
(distributed work, a work queue: each message is taken by one consumer and acknowledged),
LOGS and METRICS (what running jobs print and measure, kept so a job's whole log stays
readable after its node is gone). Events travel as a protobuf `EventEnvelope` whose id is
also the JetStream `Nats-Msg-Id`, so a re-published event is stored once. Trace context
rides in the message headers (FastStream's telemetry middleware writes and reads it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from faststream.middlewares import AckPolicy
from faststream.nats import (
    DeliverPolicy,
    JStream,
    NatsBroker,
    NatsMessage,
    PullSub,
    RetentionPolicy,
    StorageType,
)
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.js.errors import BadRequestError
from opentelemetry import propagate, trace
from prometheus_client import CollectorRegistry

from suanli_common.ids import new_id
from suanli_common.logging import get_logger
from suanli_common.metrics import nats_metrics_middleware
from suanli_common.proto.suanli.v1.events_pb2 import EventEnvelope

DAY = 24 * 3600.0

EVENTS = JStream(
    "EVENTS",
    subjects=["events.>"],
    storage=StorageType.FILE,
    max_age=30 * DAY,
    duplicate_window=120.0,
    declare=False,
)
WORK = JStream(
    "WORK",
    subjects=["work.>"],
    storage=StorageType.FILE,
    retention=RetentionPolicy.WORK_QUEUE,
    duplicate_window=120.0,
    declare=False,
)
# Declared once by `declare_streams` with their full subject sets; FastStream must not
# re-declare them with only the subjects of one subscriber.
LOGS = JStream("LOGS", subjects=["logs.>"], storage=StorageType.FILE, max_age=30 * DAY, declare=False)
METRICS = JStream(
    "METRICS", subjects=["metrics.>"], storage=StorageType.FILE, max_age=30 * DAY, declare=False
)
STREAMS = (EVENTS, WORK, LOGS, METRICS)

P = TypeVar("P", bound=Message)
log = get_logger(__name__)
_tracer = trace.get_tracer("suanli.outbox")


class _IdleFetchRestarts(logging.Filter):
    """Drops FastStream's notes on restarting a pull loop after an idle fetch timed out.

    nats-py's `fetch` may end an idle wait with a bare `asyncio.TimeoutError` (when the server's
    408 beats the client's timer), which FastStream's pull loop does not catch: its supervisor
    restarts the loop at once, nothing is lost, but it logs each restart and, the first time,
    an ERROR with a traceback that would tell an operator every service is failing."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("callback for ") and message.endswith(" is being executed..."):
            return False
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, TimeoutError) and " raised an exception, retrying..." in message)


def _broker_logger() -> logging.Logger:
    """FastStream's logger: a standard one, so its records reach the service's JSON log."""
    logger = logging.getLogger("suanli.faststream")
    if not any(isinstance(f, _IdleFetchRestarts) for f in logger.filters):
        logger.addFilter(_IdleFetchRestarts())
    return logger


def make_broker(nats_url: str, *, service: str, metrics: CollectorRegistry | None = None) -> NatsBroker:
    """A broker that reconnects forever and traces every publish and consume; with a registry, it
    also counts and times them there (FastStream's `faststream_*` metrics)."""
    middlewares: list[Any] = [NatsTelemetryMiddleware(tracer_provider=trace.get_tracer_provider())]
    if metrics is not None:
        middlewares.append(nats_metrics_middleware(metrics, service))
    return NatsBroker(
        nats_url.split(","),
        name=f"suanli-{service}",
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=2,
        middlewares=middlewares,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        logger=_broker_logger(),
        log_level=logging.DEBUG,  # every message received and processed: not for the INFO log
    )


async def declare_streams(broker: NatsBroker, replicas: int = 1) -> None:
    """Creates the streams, or brings their subjects, limits and replicas up to date (idempotent;
    every service calls it at start, so the first one up makes them). `replicas` is 3 on a
    clustered NATS (R3: a stream survives the loss of a server), 1 on one server."""
    js = broker.config.connection_state.stream
    for stream in STREAMS:
        config = dataclasses.replace(stream.config, subjects=list(stream.subjects), num_replicas=replicas)
        try:
            await js.add_stream(config=config)
        except BadRequestError:  # exists with another config
            await js.update_stream(config=config)


def event_subject(event_type: str) -> str:
    return f"events.{event_type}"


@dataclass(frozen=True, slots=True)
class Event(Generic[P]):
    id: str
    type: str
    source: str
    time: datetime
    subject: str
    data: P


def encode_event(
    event_type: str, subject: str, data: Message, *, source: str, event_id: str | None = None
) -> EventEnvelope:
    envelope = EventEnvelope(id=event_id or new_id("evt"), type=event_type, source=source, subject=subject)
    envelope.time.FromDatetime(datetime.now(UTC))
    envelope.data.Pack(data)
    return envelope


def decode_event(body: bytes, payload_type: type[P]) -> Event[P]:
    envelope = EventEnvelope.FromString(body)
    data = payload_type()
    if not envelope.data.Unpack(data):
        raise ValueError(f"event {envelope.id} carries {envelope.data.type_url}, not {payload_type}")
    return Event(
        id=envelope.id,
        type=envelope.type,
        source=envelope.source,
        time=envelope.time.ToDatetime(UTC),
        subject=envelope.subject,
        data=data,
    )


class EventPublisher:
    """Publishes facts to the EVENTS stream and waits for JetStream's acknowledgement.

    `pipelined`: `publish_many` sends a batch through `publish_batch` (every event on the wire
    before any ack is awaited, no per-message middleware) instead of one FastStream publish per
    event; for a service whose outbox relays events by the thousand (the scheduler). The trace
    still travels in the headers; FastStream's publish counters do not see these events."""

    def __init__(self, broker: NatsBroker, source: str, *, pipelined: bool = False) -> None:
        self._broker = broker
        self._source = source
        self._pipelined = pipelined

    async def publish_envelope(self, envelope: EventEnvelope) -> None:
        await self._broker.publish(
            envelope.SerializeToString(),
            subject=event_subject(envelope.type),
            headers={"Nats-Msg-Id": envelope.id, "Suanli-Event-Type": envelope.type},
            stream=EVENTS.name,
        )

    async def publish_many(self, events: Sequence[tuple[EventEnvelope, str]]) -> list[BaseException | None]:
        """Publishes (envelope, traceparent) pairs, each inside the trace its traceparent names;
        returns per event None once stored, or the error."""
        if self._pipelined:
            return await publish_batch(
                self._broker,
                EVENTS.name,
                [
                    Outgoing(
                        event_subject(e.type),
                        e.SerializeToString(),
                        traceparent,
                        msg_id=e.id,
                        headers=(("Suanli-Event-Type", e.type),),
                    )
                    for e, traceparent in events
                ],
            )
        return list(
            await asyncio.gather(*(self._publish_traced(e, tp) for e, tp in events), return_exceptions=True)
        )

    async def _publish_traced(self, envelope: EventEnvelope, traceparent: str) -> None:
        # Publish inside the trace of the request that caused the event, so the consumers' spans
        # join that trace instead of starting their own.
        parent = propagate.extract({"traceparent": traceparent} if traceparent else {})
        with _tracer.start_as_current_span("outbox.relay", context=parent):
            await self.publish_envelope(envelope)

    async def publish(
        self, event_type: str, subject: str, data: Message, event_id: str | None = None
    ) -> None:
        await self.publish_envelope(
            encode_event(event_type, subject, data, source=self._source, event_id=event_id)
        )


def subscribe_events(
    broker: NatsBroker,
    event_type: str,
    payload_type: type[P],
    handler: Callable[[Event[P]], Awaitable[None]],
    *,
    durable: str | None = None,
) -> Any:
    """Runs `handler` for each event of a type. A durable name shares the work among the
    instances of a service and resumes where it stopped; without one, every instance sees
    every new event (what caches want). Failures are nacked and redelivered."""

    async def consume(message: NatsMessage) -> None:
        await handler(decode_event(message.body, payload_type))

    subscriber: Any
    if durable:
        # A pull consumer: instances of one service share it, each message goes to one of them.
        subscriber = broker.subscriber(
            event_subject(event_type), stream=EVENTS, durable=durable, pull_sub=PullSub(batch_size=16)
        )
    else:
        subscriber = broker.subscriber(
            event_subject(event_type), stream=EVENTS, deliver_policy=DeliverPolicy.NEW
        )
    return subscriber(consume)


# ---- pipelined JetStream traffic ---------------------------------------------------------------
#
# FastStream's publish and consume run a middleware stack per message (a span, Prometheus
# counters, logging): about 0.25 ms of CPU each, which is most of what a scheduler placing
# hundreds of jobs a second spends. The few hot paths that move messages by the hundred use these
# two helpers instead: the same streams, subjects, acknowledgements and trace headers, without a
# per-message stack, and with every message of a batch on the wire before any ack is awaited.


def _cancelling() -> bool:
    """Whether the current task has been asked to stop. nats-py turns a cancellation inside some
    calls into its own errors (publish_async raises TooManyStalledMsgsError, a fetch on a closing
    connection ConnectionClosedError); a loop that retries on errors must not retry those."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for `publish_batch`; `traceparent` continues the trace it was caused in."""

    subject: str
    body: bytes
    traceparent: str = ""
    msg_id: str = ""  # JetStream de-duplicates a re-published message by it
    headers: tuple[tuple[str, str], ...] = ()  # any others


async def publish_batch(
    broker: NatsBroker, stream: str, messages: Sequence[Outgoing], timeout: float = 10.0
) -> list[BaseException | None]:
    """Publishes messages to a JetStream stream and waits for every acknowledgement: all are
    sent first, then the acks are awaited together (one round trip for the batch instead of one
    per message). Returns, per message in order, None once the stream has stored it, or the
    error. Messages of one subject are stored in the order given."""
    js = broker.config.connection_state.stream
    outcomes: list[BaseException | None] = [None] * len(messages)
    pending: dict[asyncio.Future[Any], int] = {}
    for index, message in enumerate(messages):
        headers = dict(message.headers)
        if message.traceparent:
            headers["traceparent"] = message.traceparent
        if message.msg_id:
            headers["Nats-Msg-Id"] = message.msg_id
        try:
            future = await js.publish_async(
                message.subject, message.body, stream=stream, headers=headers or None
            )
        except Exception as exc:
            if _cancelling():
                for sent in pending:
                    sent.cancel()
                raise asyncio.CancelledError from exc
            outcomes[index] = exc
            continue
        pending[future] = index
    if pending:
        done, late = await asyncio.wait(pending, timeout=timeout)
        for future in late:
            future.cancel()  # frees its slot in nats-py's table of pending publishes
            outcomes[pending[future]] = TimeoutError(f"no acknowledgement from {stream} in {timeout} s")
        for future in done:
            if (error := future.exception()) is not None:
                outcomes[pending[future]] = error
    return outcomes


async def subscribe_plain(broker: NatsBroker, subject: str, handler: Callable[[Msg], Awaitable[None]]) -> Any:
    """Runs `handler` for each core NATS message on `subject` (one at a time, in order), without a
    per-message middleware stack: for steady chatter such as every agent's heartbeat each second,
    whose spans would only bury real traces. A failing message is logged and skipped. Call once
    connected; returns the subscription (unsubscribe to stop)."""
    client = broker.connection

    async def on_message(message: Msg) -> None:
        try:
            await handler(message)
        except Exception:
            log.warning("handling a message on %s failed", message.subject, exc_info=True)

    return await client.subscribe(subject, cb=on_message)


async def consume_batches(
    broker: NatsBroker,
    subject: str,
    stream: JStream,
    durable: str,
    handler: Callable[[list[Msg]], Awaitable[Sequence[BaseException | None]]],
    *,
    max_batch: int = 256,
    linger_s: float = 0.002,
    idle_wait_s: float = 5.0,
) -> None:
    """Runs forever: takes the messages of a durable pull consumer in batches and hands each batch
    to `handler`, which returns an outcome per message; a message is acknowledged only once its
    outcome is None (its effect is stored), else nacked for redelivery.

    Waits for one message, then takes what else arrives within `linger_s` (up to `max_batch`), so
    a lone message is handled at once and a burst in batches. Instances of a service share the
    durable consumer, each message going to one of them."""
    js = broker.config.connection_state.stream
    subscription = await js.pull_subscribe(subject, durable=durable, stream=stream.name)
    try:
        while True:
            try:
                batch = await subscription.fetch(1, timeout=idle_wait_s)
            except TimeoutError:
                continue
            except Exception as exc:
                if _cancelling():
                    raise asyncio.CancelledError from exc
                log.warning("fetching from %s failed; retrying", durable, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            try:
                batch += await subscription.fetch(max_batch - 1, timeout=linger_s)
            except Exception as exc:  # a timeout: nothing more came; else what was taken is handled
                if _cancelling():
                    raise asyncio.CancelledError from exc
            try:
                outcomes = await handler(batch)
            except Exception as exc:
                log.warning("a batch from %s failed; it will be redelivered", durable, exc_info=True)
                outcomes = [exc] * len(batch)
            for message, outcome in zip(batch, outcomes, strict=True):
                with contextlib.suppress(Exception):  # an unacknowledged message is redelivered
                    await (message.ack() if outcome is None else message.nak())
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
