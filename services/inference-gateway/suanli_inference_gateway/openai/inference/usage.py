"""`usage.recorded`: one event per answered inference request, for metering and quotas.

Recorded off the request's path: `record` only counts the tokens and buffers the usage in the
process; a flusher publishes what has gathered as one pipelined JetStream batch (`publish_batch`)
a second after the first record of a batch (`linger_s`). One FastStream publish per request (a
task, a span, counters and a round trip each) cost the gateway CPU per request, and auth a
transaction per request (~3 ms of CPU each, ~0.3 ms per event in a batch of ten), on a machine
where every CPU millisecond shows up as latency (issue 6). A second of delay costs metering
nothing: the gateway counts what it serves against quotas and rate limits itself, at once.

An event gets its id once, so a batch published again after a failure is stored once
(`Nats-Msg-Id`); a bus that is down delays the records, it does not lose them, until the buffer
is full or the gateway stops with the bus still down, which is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Protocol

from faststream.nats import NatsBroker
from opentelemetry import trace

from suanli_common.bus import EVENTS, Outgoing, encode_event, event_subject, publish_batch
from suanli_common.ids import new_id
from suanli_common.logging import get_logger
from suanli_common.proto.suanli.v1.events_pb2 import UsageRecorded
from suanli_inference_gateway.metrics import TokenMetrics

log = get_logger(__name__)

USAGE_RECORDED = "usage.recorded"
_HEADERS = (("Suanli-Event-Type", USAGE_RECORDED),)


@dataclass(frozen=True, slots=True)
class Usage:
    user_id: str
    api_key_id: str
    deployment_id: str
    model: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int
    status_code: int
    duration_ms: float
    stream: bool


class UsageSink(Protocol):
    def record(self, usage: Usage) -> None: ...


@dataclass(frozen=True, slots=True)
class _Recorded:
    usage: Usage
    at_ns: int  # when the request was answered: the event's time
    traceparent: str  # the request's trace, continued by the consumers


def _traceparent() -> str:
    """The current span as a W3C traceparent ("" outside a trace), without a propagator's work."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


class EventUsageSink:
    """Buffers usage records and publishes them in batches; `start` the flusher once the broker is
    connected, and `aclose` it before the broker stops (it publishes what is left)."""

    def __init__(
        self,
        broker: NatsBroker,
        tokens: TokenMetrics | None = None,
        *,
        source: str = "gateway",
        linger_s: float = 1.0,
        max_batch: int = 256,
        retry_s: float = 1.0,
        max_buffered: int = 100_000,
    ) -> None:
        self._broker = broker
        self._tokens = tokens
        self._source = source
        self._linger_s = linger_s
        self._max_batch = max_batch
        self._retry_s = retry_s
        self._max_buffered = max_buffered
        self._recorded: list[_Recorded] = []  # not yet encoded
        self._unsent: list[Outgoing] = []  # encoded (their ids fixed), not stored yet: sent again
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    def record(self, usage: Usage) -> None:
        if self._tokens is not None:
            self._tokens.count(usage.model, usage.prompt_tokens, usage.completion_tokens)
        self._recorded.append(_Recorded(usage, time.time_ns(), _traceparent()))
        self._wake.set()

    @property
    def buffered(self) -> int:
        """Records not yet stored by the bus."""
        return len(self._recorded) + len(self._unsent)

    def start(self) -> None:
        self._flusher = asyncio.get_running_loop().create_task(self._run(), name="gateway-usage-flusher")

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Stops the flusher and publishes what is buffered, trying again until `timeout_s`."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        deadline = time.monotonic() + timeout_s
        while self.buffered and not await self.flush():
            left = deadline - time.monotonic()
            if left <= 0:
                log.error("usage records lost at shutdown: the bus did not store them", count=self.buffered)
                return
            await asyncio.sleep(min(self._retry_s, left))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if len(self._recorded) < self._max_batch:
                await asyncio.sleep(self._linger_s)  # let the records of concurrent requests gather
            self._wake.clear()
            if not await self.flush():
                self._shed_overflow()
                await asyncio.sleep(self._retry_s)
                self._wake.set()

    async def flush(self) -> bool:
        """Publishes every buffered record; True when the bus stored them all. Those it did not
        store stay buffered, to be sent again with the same ids."""
        batch = self._unsent + [self._encode(recorded) for recorded in self._recorded]
        self._unsent, self._recorded = [], []
        failed: list[Outgoing] = []
        first_error: BaseException | None = None
        done = 0  # how many of `batch` have an outcome
        try:
            while done < len(batch):
                chunk = batch[done : done + self._max_batch]
                try:
                    outcomes = await publish_batch(self._broker, EVENTS.name, chunk)
                except Exception as exc:  # not connected: none of the chunk went out
                    outcomes = [exc] * len(chunk)
                for message, outcome in zip(chunk, outcomes, strict=True):
                    if outcome is not None:
                        failed.append(message)
                        first_error = first_error or outcome
                done += len(chunk)
        except BaseException:
            # Cancelled mid-batch: whatever may not have been stored is kept (sent again, it is
            # de-duplicated by its id where it was).
            self._unsent = failed + batch[done:] + self._unsent
            raise
        if failed:
            self._unsent = failed + self._unsent
            log.warning(
                "usage records not published yet; retrying",
                count=len(failed),
                error=str(first_error) or type(first_error).__name__,
            )
        return not failed

    def _shed_overflow(self) -> None:
        """A bus down for long: keep the newest `max_buffered` records, saying how many are lost."""
        excess = self.buffered - self._max_buffered
        if excess > 0:
            del self._unsent[:excess]
            log.error("usage records lost: the bus is unavailable and the buffer is full", count=excess)

    def _encode(self, recorded: _Recorded) -> Outgoing:
        usage = recorded.usage
        request_id = new_id("req")
        payload = UsageRecorded(
            request_id=request_id,
            user_id=usage.user_id,
            api_key_id=usage.api_key_id,
            deployment_id=usage.deployment_id,
            model=usage.model,
            endpoint=usage.endpoint,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            status_code=usage.status_code,
            duration_ms=usage.duration_ms,
            stream=usage.stream,
        )
        envelope = encode_event(USAGE_RECORDED, request_id, payload, source=self._source)
        envelope.time.FromNanoseconds(recorded.at_ns)
        return Outgoing(
            event_subject(USAGE_RECORDED),
            envelope.SerializeToString(),
            recorded.traceparent,
            msg_id=envelope.id,
            headers=_HEADERS,  # as `EventPublisher` sends an event
        )
