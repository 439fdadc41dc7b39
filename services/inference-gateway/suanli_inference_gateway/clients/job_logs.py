"""A job's log as the agents left it in JetStream's LOGS stream (`logs.job.<job_id>.<node>`, one
line per message), read through `job_streams`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from suanli_common.bus import LOGS
from suanli_inference_gateway.clients.job_streams import SubjectCursor, node_of, open_subject


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
    return LogLine(
        seq=msg.metadata.sequence.stream,
        node=node_of(msg.subject),
        stream=headers.get("Suanli-Stream", "stdout"),
        line=msg.data.decode("utf-8", errors="replace"),
        attempt=int(headers.get("Suanli-Attempt", "0") or 0),
        node_rank=int(headers.get("Suanli-Node-Rank", "0") or 0),
    )


class _LineCursor:
    def __init__(self, cursor: SubjectCursor) -> None:
        self._cursor = cursor

    async def next(self, timeout: float) -> LogLine | None:
        msg = await self._cursor.next_msg(timeout)
        return None if msg is None else _line(msg)

    async def stored_until(self) -> int:
        return await self._cursor.stored_until()


class JetStreamJobLogs:
    """`JobLogs` over a JetStream context (the gateway's broker connection, resolved on use since
    the broker connects after the app is built)."""

    def __init__(self, jetstream: Callable[[], JetStreamContext]) -> None:
        self._jetstream = jetstream

    @contextlib.asynccontextmanager
    async def open(self, job_id: str, *, after_seq: int = 0) -> AsyncIterator[LogCursor]:
        async with open_subject(
            self._jetstream(), LOGS.name, job_log_filter(job_id), after_seq=after_seq
        ) as cursor:
            yield _LineCursor(cursor)
