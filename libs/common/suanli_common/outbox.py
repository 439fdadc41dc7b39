"""Transactional outbox: events are written in the same transaction as the change they report,
then a relay publishes them to JetStream. A crash between commit and publish loses nothing (the
row stays pending) and publishing twice is harmless (the envelope id de-duplicates).

The relay publishes a page of pending events concurrently, keeping the order of the events of one
subject (one job, one user), and deletes what it published in one statement; a publisher made
`pipelined` sends each round of a page as one batch."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from google.protobuf.message import Message
from sqlalchemy import DateTime, LargeBinary, String, delete, insert, select
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column

from suanli_common.bus import EventPublisher, encode_event
from suanli_common.db import Database
from suanli_common.logging import get_logger
from suanli_common.proto.suanli.v1.events_pb2 import EventEnvelope
from suanli_common.telemetry import current_traceparent

log = get_logger(__name__)
_PAGE = 500  # events read and published per round trip
# session.info keys: events staged and not yet written; the listeners are registered; events were
# written in the transaction now committing.
_PENDING = "suanli.outbox.pending"
_WATCHED = "suanli.outbox.watched"
_WRITTEN = "suanli.outbox.written"


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
        info = session.sync_session.info
        pending: list[dict[str, object]] | None = info.get(_PENDING)
        if pending is None:
            pending = info[_PENDING] = []
            self._watch(session)
        pending.append(
            {
                "id": envelope.id,
                "envelope": envelope.SerializeToString(),
                "traceparent": current_traceparent(),
                "created_at": envelope.time.ToDatetime(UTC),
            }
        )

    def _watch(self, session: AsyncSession) -> None:
        """Once per session: its staged events are written as one multi-row INSERT (plain Core,
        no unit-of-work bookkeeping per event) just before each commit, in that transaction; the
        relay is woken after the commit, not before (it would find nothing yet); a rollback
        drops them."""
        sync_session = session.sync_session
        info = sync_session.info
        if info.get(_WATCHED):
            return
        info[_WATCHED] = True
        table = self._table.__table__  # type: ignore[attr-defined]

        def write(sess: Session) -> None:
            rows = info.pop(_PENDING, None)
            if rows:
                info[_WRITTEN] = True
                sess.execute(insert(table), rows)

        def wake(_sess: Session) -> None:
            if info.pop(_WRITTEN, False):
                self._wake.set()

        def drop(_sess: Session) -> None:
            info.pop(_PENDING, None)
            info.pop(_WRITTEN, None)

        sa_event.listen(sync_session, "before_commit", write)
        sa_event.listen(sync_session, "after_commit", wake)
        sa_event.listen(sync_session, "after_rollback", drop)

    async def flush(self) -> int:
        """Publishes every pending event, in order per subject; returns how many were sent."""
        sent = 0
        while True:
            count, full = await self._flush_page()
            sent += count
            if not full:
                return sent

    async def _flush_page(self) -> tuple[int, bool]:
        # Two short transactions around the publishing, never one held open across the network
        # round trips: the service's own writers would wait on the database meanwhile.
        table = self._table
        async with self._db.session() as session:
            # Columns, not entities: rows that are only read and deleted need no ORM identity.
            query = select(table.id, table.traceparent, table.envelope)
            query = query.order_by(table.created_at).limit(_PAGE)
            rows = (await session.execute(query)).all()
            pending = [(row_id, tp, EventEnvelope.FromString(data)) for row_id, tp, data in rows]
        queues: dict[str, list[tuple[str, str, EventEnvelope]]] = {}
        for event in pending:
            queues.setdefault(event[2].subject, []).append(event)
        published: list[str] = []
        error: BaseException | None = None
        # In rounds: each round publishes the oldest pending event of every subject together, so
        # a later event of one subject (one job, one user) is sent only once the earlier one is
        # stored, and never overtakes it; a subject whose event failed stops for this flush.
        while queues:
            heads = [events.pop(0) for events in queues.values()]
            outcomes = await self._publisher.publish_many([(e, tp) for _, tp, e in heads])
            for (row_id, _, envelope), outcome in zip(heads, outcomes, strict=True):
                if outcome is None:
                    published.append(row_id)
                else:
                    error = error or outcome
                    queues.pop(envelope.subject, None)
            queues = {subject: events for subject, events in queues.items() if events}
        if published:
            async with self._db.session() as session:
                await session.execute(delete(table).where(table.id.in_(published)))
        if error is not None:
            raise error  # the rest stays pending; the relay retries
        return len(published), len(pending) == _PAGE

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
