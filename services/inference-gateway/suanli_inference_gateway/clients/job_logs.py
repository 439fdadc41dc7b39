"""A job's log as the agents left it in JetStream's LOGS stream (`logs.job.<job_id>.<node>`, one
line per message), read with an ordered ephemeral consumer: nothing to clean up, no ack traffic.

Whether a reader has seen everything is decided by stream sequences, not by waiting for silence:
`stored_until()` asks the stream for the last sequence of the job's subjects, and the reader is
done once it has read that one. Agents publish every line (acknowledged) before reporting the
job's end, so once the job is terminal that sequence is final.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from suanli_common.bus import LOGS


@dataclass(frozen=True, slots=True)
class LogLine:
    seq: int  # the LOGS stream's sequence: a resumable position (SSE's Last-Event-ID)
    node: str
    stream: str  # "stdout" or "stderr"
    line: str
    attempt: int
    node_rank: int


def job_log_filter(job_id: str) -> str:
    return f"logs.job.{job_id}.>"


class LogCursor(Protocol):
    async def next(self, timeout: float) -> LogLine | None:
        """The next line, or None when none came within `timeout` seconds."""
        ...

    async def stored_until(self) -> int:
        """The sequence of the job's last line stored now; 0 when it has none."""
        ...


class JobLogs(Protocol):
    def open(self, job_id: str, *, after_seq: int = 0) -> contextlib.AbstractAsyncContextManager[LogCursor]:
        """A cursor over the job's lines from the first one (or the one after `after_seq`)."""
        ...


def _line(msg: Msg) -> LogLine:
    headers = msg.headers or {}
    # logs.job.<job_id>.<node>: node ids may not hold dots, job ids do not.
    node = msg.subject.split(".", 3)[3] if msg.subject.count(".") >= 3 else ""
    return LogLine(
        seq=msg.metadata.sequence.stream,
        node=node,
        stream=headers.get("Suanli-Stream", "stdout"),
        line=msg.data.decode("utf-8", errors="replace"),
        attempt=int(headers.get("Suanli-Attempt", "0") or 0),
        node_rank=int(headers.get("Suanli-Node-Rank", "0") or 0),
    )


class _JetStreamCursor:
    def __init__(self, js: JetStreamContext, job_id: str, sub: JetStreamContext.PushSubscription) -> None:
        self._js = js
        self._job_id = job_id
        self._sub = sub

    async def next(self, timeout: float) -> LogLine | None:
        try:
            msg = await self._sub.next_msg(timeout=timeout)
        except nats.errors.TimeoutError:
            return None
        return _line(msg)

    async def stored_until(self) -> int:
        try:
            info = await self._js.stream_info(LOGS.name, subjects_filter=job_log_filter(self._job_id))
        except NotFoundError:
            return 0
        last = 0
        # One subject per node the job ran on; the stream knows each subject's last message.
        for subject in info.state.subjects or {}:
            with contextlib.suppress(NotFoundError):
                msg = await self._js.get_last_msg(LOGS.name, subject)
                last = max(last, msg.seq or 0)
        return last


class JetStreamJobLogs:
    """`JobLogs` over a JetStream context (the gateway's broker connection, resolved on use since
    the broker connects after the app is built)."""

    def __init__(self, jetstream: Callable[[], JetStreamContext]) -> None:
        self._jetstream = jetstream

    @contextlib.asynccontextmanager
    async def open(self, job_id: str, *, after_seq: int = 0) -> AsyncIterator[LogCursor]:
        js = self._jetstream()
        config = (
            ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after_seq + 1)
            if after_seq > 0
            else ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        sub = await js.subscribe(
            job_log_filter(job_id), stream=LOGS.name, ordered_consumer=True, config=config
        )
        try:
            yield _JetStreamCursor(js, job_id, sub)
        finally:
            with contextlib.suppress(Exception):  # the connection may be gone; the consumer expires
                await sub.unsubscribe()
