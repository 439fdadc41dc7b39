"""The ingestion worker on JetStream: `document.uploaded` events are work, shared by every rag
process through one durable pull consumer, several documents at a time.

A document is acknowledged only when its outcome is committed. While it is being indexed the
worker tells JetStream it is still busy (`in_progress`), so a long document is not handed to a
second worker; a worker that dies stops doing so, and after `ack_wait` the document goes to the
next one (or to this process after a restart), which resumes it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from faststream.nats import NatsBroker, NatsMessage, PullSub
from nats.js.api import ConsumerConfig

from suanli_common.bus import EVENTS, decode_event, event_subject
from suanli_common.logging import get_logger
from suanli_common.proto.suanli.v1.events_pb2 import DocumentChanged
from suanli_rag.ingestion import Ingestion
from suanli_rag.knowledge_bases import DOCUMENT_UPLOADED

INGEST_CONSUMER = "rag-ingest"
MAX_DELIVERIES = 5  # then the document fails for good instead of cycling forever
RETRY_DELAY_S = 2.0

log = get_logger(__name__)


async def _keep_busy(message: NatsMessage, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        await message.in_progress()


def subscribe_ingestion(
    broker: NatsBroker, ingestion: Ingestion, *, concurrency: int, ack_wait_s: float
) -> Any:
    async def ingest(message: NatsMessage) -> None:
        event = decode_event(message.body, DocumentChanged)
        deliveries = message.raw_message.metadata.num_delivered
        if deliveries > MAX_DELIVERIES:
            await ingestion.fail(event.data, "ingestion_error", f"indexing failed {MAX_DELIVERIES} times")
            return
        busy = asyncio.create_task(_keep_busy(message, ack_wait_s / 3))
        try:
            await ingestion.ingest(event.data)
        except Exception:
            # Transient (the catalog or an embedding deployment is unreachable): try again later.
            log.exception("ingestion failed; retrying", file=event.data.file_id, delivery=deliveries)
            await message.nack(delay=RETRY_DELAY_S * deliveries)
        finally:
            busy.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await busy

    subscriber = broker.subscriber(
        event_subject(DOCUMENT_UPLOADED),
        stream=EVENTS,
        durable=INGEST_CONSUMER,
        config=ConsumerConfig(ack_wait=ack_wait_s, max_deliver=MAX_DELIVERIES + 1),
        pull_sub=PullSub(batch_size=concurrency),
        max_workers=concurrency,
    )
    return subscriber(ingest)
