"""Reading one job's messages back from a JetStream stream (LOGS: what it printed; METRICS: what it
measured) with an ordered ephemeral consumer: nothing to clean up, no ack traffic.

Whether a reader has seen everything is decided by stream sequences, not by waiting for silence:
`stored_until()` asks the stream for the last sequence of the job's subjects, and the reader is
done once it has read that one. Agents publish every message (acknowledged) before reporting the
job's end, so once the job is terminal that sequence is final.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError


class SubjectCursor:
    """The messages of one subject filter of one stream, in stream order."""

    def __init__(
        self, js: JetStreamContext, stream: str, subject_filter: str, sub: JetStreamContext.PushSubscription
    ) -> None:
        self._js = js
        self._stream = stream
        self._filter = subject_filter
        self._sub = sub

    async def next_msg(self, timeout: float) -> Msg | None:
        try:
            return await self._sub.next_msg(timeout=timeout)
        except nats.errors.TimeoutError:
            return None

    async def stored_until(self) -> int:
        """The sequence of the filter's last message stored now; 0 when it has none."""
        try:
            info = await self._js.stream_info(self._stream, subjects_filter=self._filter)
        except NotFoundError:
            return 0
        last = 0
        # One subject per node the job ran on; the stream knows each subject's last message.
        for subject in info.state.subjects or {}:
            with contextlib.suppress(NotFoundError):
                msg = await self._js.get_last_msg(self._stream, subject)
                last = max(last, msg.seq or 0)
        return last

    async def drain(self, after_seq: int, timeout: float) -> AsyncIterator[Msg]:
        """The messages stored now that come after `after_seq` (`timeout` bounds a wait that would
        mean the stream lost them)."""
        until = await self.stored_until()
        while after_seq < until:
            msg = await self.next_msg(timeout)
            if msg is None:
                return
            after_seq = msg.metadata.sequence.stream
            yield msg


@contextlib.asynccontextmanager
async def open_subject(
    js: JetStreamContext, stream: str, subject_filter: str, *, after_seq: int = 0
) -> AsyncIterator[SubjectCursor]:
    config = (
        ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after_seq + 1)
        if after_seq > 0
        else ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    sub = await js.subscribe(subject_filter, stream=stream, ordered_consumer=True, config=config)
    try:
        yield SubjectCursor(js, stream, subject_filter, sub)
    finally:
        with contextlib.suppress(Exception):  # the connection may be gone; the consumer expires
            await sub.unsubscribe()


def node_of(subject: str) -> str:
    """`<kind>.job.<job_id>.<node>`: node ids may not hold dots, job ids do not."""
    return subject.split(".", 3)[3] if subject.count(".") >= 3 else ""
