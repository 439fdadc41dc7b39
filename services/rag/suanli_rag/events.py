"""What the rag service publishes (`document.indexed`, `document.failed`) and the ingestion
worker that consumes `document.uploaded`: work shared by every rag process through one durable
JetStream pull consumer.

A document is acknowledged only once its outcome is committed. The worker fetches a document
only when it has a free slot, and from then on tells JetStream it is busy with it (`in_progress`)
until it is done, so a long document is never handed to a second worker while the first lives;
a worker that dies stops saying so, and after `ack_wait` the document goes to the next worker
(or to this process after its restart), which runs the same attempt again. (FastStream's
concurrent pull subscriber fetches ahead of its free workers, leaving fetched documents without a
heartbeat; hence this loop on nats-py.)"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import propagate, trace

from suanli_common.bus import EVENTS, decode_event, event_subject
from suanli_common.logging import get_logger
from suanli_common.proto.suanli.v1.events_pb2 import DocumentChanged

if TYPE_CHECKING:
    from suanli_rag.ingestion import Ingestion

DOCUMENT_UPLOADED = "document.uploaded"
DOCUMENT_INDEXED = "document.indexed"
DOCUMENT_FAILED = "document.failed"

INGEST_CONSUMER = "rag-ingest"
MAX_ATTEMPTS = 8  # deliveries of one document before it fails for good
RETRY_DELAYS_S = (2.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0)  # a restarting catalog is waited for

log = get_logger(__name__)
_tracer = trace.get_tracer("suanli.rag.ingestion")


class IngestionWorker:
    def __init__(
        self, js: JetStreamContext, ingestion: Ingestion, *, concurrency: int, ack_wait_s: float
    ) -> None:
        self._js = js
        self._ingestion = ingestion
        self._slots = asyncio.Semaphore(concurrency)
        self._ack_wait_s = ack_wait_s
        self._running: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Consumes until cancelled; a lost connection or a refused consumer is tried again."""
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the ingestion consumer stopped; starting it again")
                await asyncio.sleep(1.0)

    async def _consume(self) -> None:
        # add_consumer creates the durable consumer or brings its settings up to date.
        await self._js.add_consumer(
            EVENTS.name,
            ConsumerConfig(
                durable_name=INGEST_CONSUMER,
                filter_subject=event_subject(DOCUMENT_UPLOADED),
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_wait_s,
                max_deliver=-1,  # this worker counts attempts and fails a document itself
            ),
        )
        subscription = await self._js.pull_subscribe_bind(INGEST_CONSUMER, stream=EVENTS.name)
        try:
            while True:
                await self._slots.acquire()
                try:
                    [message] = await subscription.fetch(1, timeout=5)
                except (nats.errors.TimeoutError, TimeoutError):
                    self._slots.release()
                    continue
                except BaseException:
                    self._slots.release()
                    raise
                task = asyncio.create_task(self._handle(message))
                self._running.add(task)
                task.add_done_callback(self._done)
        finally:
            for task in self._running:
                task.cancel()  # unacknowledged: redelivered to the next worker
            await asyncio.gather(*self._running, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()

    async def _handle(self, message: Msg) -> None:
        try:
            event = decode_event(message.data, DocumentChanged)
        except Exception:
            log.exception("an undecodable document.uploaded; dropped")
            await message.term()
            return
        deliveries = message.metadata.num_delivered
        context = propagate.extract(dict(message.headers or {}))
        busy = asyncio.create_task(self._keep_busy(message))
        try:
            with _tracer.start_as_current_span("rag.ingest", context=context) as span:
                span.set_attributes({"suanli.file_id": event.data.file_id, "suanli.delivery": deliveries})
                if deliveries > MAX_ATTEMPTS:
                    await self._ingestion.fail(
                        event.data, "ingestion_error", f"indexing failed {MAX_ATTEMPTS} times"
                    )
                else:
                    await self._ingestion.ingest(event.data)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Transient (the catalog or an embedding deployment unreachable): again, later.
            delay = RETRY_DELAYS_S[min(deliveries, len(RETRY_DELAYS_S)) - 1]
            log.exception(
                "indexing failed; will retry", file=event.data.file_id, delivery=deliveries, in_s=delay
            )
            await self._settle(message.nak(delay=delay))
            return
        finally:
            busy.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await busy
        await self._settle(message.ack())

    async def _keep_busy(self, message: Msg) -> None:
        while True:
            await asyncio.sleep(self._ack_wait_s / 3)
            with contextlib.suppress(Exception):  # a reconnect: the next beat, or redelivery, follows
                await message.in_progress()

    @staticmethod
    async def _settle(reply: object) -> None:
        with contextlib.suppress(Exception):  # the connection dropped: JetStream redelivers
            await reply  # type: ignore[misc]
