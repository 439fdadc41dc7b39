"""Transactional outbox: events are written in the same transaction as the change they report,
then a relay publishes them to JetStream. A crash between commit and publish loses nothing (the
row stays pending) and publishing twice is harmless (the envelope id de-duplicates)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from google.protobuf.message import Message
from opentelemetry import propagate, trace
from sqlalchemy import DateTime, LargeBinary, String, select
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from suanli_common.bus import EventPublisher, encode_event
from suanli_common.db import Database
from suanli_common.logging import get_logger
from suanli_common.proto.suanli.v1.events_pb2 import EventEnvelope
from suanli_common.telemetry import inject_trace_headers

log = get_logger(__name__)
_tracer = trace.get_tracer("suanli.outbox")


class OutboxMixin:
    """Columns of a service's `outbox` table (declare `class Outbox(OutboxMixin, Base)`)."""

    __tablename__ = "outbox"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    traceparent: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Outbox:
    def __init__(
        self, db: Database, table: type[OutboxMixin], publisher: EventPublisher, source: str
    ) -> None:
        self._db = db
        self._table = table
        self._publisher = publisher
        self._source = source
        self._wake = asyncio.Event()

    def add(self, session: AsyncSession, event_type: str, subject: str, data: Message) -> None:
        """Stages an event in the caller's unit of work; it is sent after the commit."""
        envelope = encode_event(event_type, subject, data, source=self._source)
        row = self._table()
        row.id = envelope.id
        row.envelope = envelope.SerializeToString()
        row.traceparent = inject_trace_headers().get("traceparent", "")
        row.created_at = envelope.time.ToDatetime(UTC)
        session.add(row)
        # Wake the relay when this unit of work commits, not before: it would find nothing yet.
        sa_event.listen(session.sync_session, "after_commit", lambda _s: self._wake.set(), once=True)

    async def flush(self) -> int:
        """Publishes every pending event in order; returns how many were sent."""
        sent = 0
        async with self._db.session() as session:
            rows = (
                await session.scalars(select(self._table).order_by(self._table.created_at).limit(500))
            ).all()
            for row in rows:
                # Publish inside the trace of the request that caused the event, so the
                # consumers' spans join that trace instead of starting their own.
                parent = propagate.extract({"traceparent": row.traceparent} if row.traceparent else {})
                with _tracer.start_as_current_span("outbox.relay", context=parent):
                    await self._publisher.publish_envelope(EventEnvelope.FromString(row.envelope))
                await session.delete(row)
                sent += 1
        return sent

    async def run(self, interval: float = 1.0) -> None:
        """Relays forever: at once after a commit that staged events, else every `interval`."""
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event fires (CPython gh-86296), and the relay would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("outbox relay failed; will retry", exc_info=True)
