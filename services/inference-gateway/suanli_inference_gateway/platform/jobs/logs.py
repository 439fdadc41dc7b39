"""Serving a job's log: the text so far, or a Server-Sent Events stream that follows it until the
job ends (one `data:` event per line, its id the stream sequence so a client can resume with
Last-Event-ID, then `event: end` with the job's final status)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from suanli_common.errors import SuanliError
from suanli_common.logging import get_logger
from suanli_inference_gateway.clients.job_logs import JobLogs, LogCursor, LogLine
from suanli_inference_gateway.clients.scheduler import Job, SchedulerApi
from suanli_inference_gateway.platform.jobs.protocol import LogEndEvent, LogEvent

log = get_logger(__name__)

# Lines already stored arrive at once; this bounds a wait that would mean the stream lost them.
DRAIN_TIMEOUT_S = 5.0
# While nothing is printed, how often the job's status is looked at (the end of the stream).
IDLE_POLL_S = 1.0
# A comment line now and then keeps proxies from closing a quiet stream.
KEEPALIVE_S = 15.0


async def _drain(cursor: LogCursor, last_seen: int) -> AsyncIterator[LogLine]:
    """The lines stored now that come after `last_seen`."""
    until = await cursor.stored_until()
    while last_seen < until:
        line = await cursor.next(DRAIN_TIMEOUT_S)
        if line is None:
            log.warning("log lines stored but not delivered", until=until, last_seen=last_seen)
            return
        last_seen = line.seq
        yield line


def _text_line(line: LogLine, multi_node: bool) -> str:
    return f"[{line.node}] {line.line}\n" if multi_node else f"{line.line}\n"


async def log_text(logs: JobLogs, job: Job) -> AsyncIterator[bytes]:
    """The log so far, one line per line (prefixed with its node when the job spans several)."""
    multi_node = job.spec.nodes > 1
    async with logs.open(job.id) as cursor:
        async for line in _drain(cursor, 0):
            yield _text_line(line, multi_node).encode()


def sse_event(data: str, *, event: str | None = None, event_id: int | None = None) -> bytes:
    parts = []
    if event_id is not None:
        parts.append(f"id: {event_id}")
    if event is not None:
        parts.append(f"event: {event}")
    parts.append(f"data: {data}")  # our data is one line of JSON: no newline to split
    return ("\n".join(parts) + "\n\n").encode()


def _line_event(line: LogLine) -> bytes:
    return sse_event(LogEvent.of(line).model_dump_json(), event_id=line.seq)


async def log_events(
    logs: JobLogs, scheduler: SchedulerApi, caller_id: str, job: Job, *, after_seq: int = 0
) -> AsyncIterator[bytes]:
    """Follows the job's log until the job has ended and every line it printed has been sent."""
    last_seen = after_seq
    try:
        async with logs.open(job.id, after_seq=after_seq) as cursor:
            last_sent = time.monotonic()
            while not job.status.terminal:
                line = await cursor.next(IDLE_POLL_S)
                if line is not None:
                    last_seen = line.seq
                    last_sent = time.monotonic()
                    yield _line_event(line)
                    continue
                job = await scheduler.get_job(caller_id, job.id)
                if time.monotonic() - last_sent >= KEEPALIVE_S:
                    last_sent = time.monotonic()
                    yield b": keepalive\n\n"
            # Ended: its agents stored every line before reporting the end; send what is left.
            async for line in _drain(cursor, last_seen):
                yield _line_event(line)
        yield sse_event(LogEndEvent.of(job).model_dump_json(), event="end")
    except SuanliError as exc:  # too late for an HTTP status: the error is the stream's last event
        yield sse_event(json.dumps(exc.to_openai()), event="error")
