"""The NATS/JetStream layer, on FastStream.

Four streams carry everything: EVENTS (facts that happened, kept for replay), WORK
(distributed work, a work queue: each message is taken by one consumer and acknowledged),
LOGS and METRICS (what running jobs print and measure, kept so a job's whole log stays
readable after its node is gone). Events travel as a protobuf `EventEnvelope` whose id is
also the JetStream `Nats-Msg-Id`, so a re-published event is stored once. Trace context
rides in the message headers (FastStream's telemetry middleware writes and reads it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
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
from nats.js.errors import BadRequestError
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from suanli_common.ids import new_id
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
        log_level=10,
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
    """Publishes facts to the EVENTS stream and waits for JetStream's acknowledgement."""

    def __init__(self, broker: NatsBroker, source: str) -> None:
        self._broker = broker
        self._source = source

    async def publish_envelope(self, envelope: EventEnvelope) -> None:
        await self._broker.publish(
            envelope.SerializeToString(),
            subject=event_subject(envelope.type),
            headers={"Nats-Msg-Id": envelope.id, "Suanli-Event-Type": envelope.type},
            stream=EVENTS.name,
        )

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
