"""What a job measured, as the agents left it in JetStream's METRICS stream
(`metrics.job.<job_id>.<node>`, one JSON object per message, its kind in `Suanli-Kind`): per-step
training metrics, checkpoints taken, and the final result."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from suanli_common.bus import METRICS
from suanli_inference_gateway.clients.job_streams import node_of, open_subject

RecordKind = Literal["metrics", "checkpoint", "result"]
KINDS: frozenset[str] = frozenset({"metrics", "checkpoint", "result"})
# Records already stored arrive at once; this bounds a wait that would mean the stream lost them.
DRAIN_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class JobRecord:
    seq: int  # the METRICS stream's sequence: unique and ordered
    kind: RecordKind
    attempt: int
    node: str
    time: datetime  # when the stream stored it
    body: dict[str, Any]


def job_metrics_filter(job_id: str) -> str:
    return f"metrics.job.{job_id}.>"


class JobMetrics(Protocol):
    async def records(self, job_id: str) -> list[JobRecord]:
        """Every record the job's attempts left, oldest first."""
        ...


def _record(msg: Msg) -> JobRecord | None:
    headers = msg.headers or {}
    kind = headers.get("Suanli-Kind", "")
    try:
        body = json.loads(msg.data)
    except ValueError:
        return None
    if kind not in KINDS or not isinstance(body, dict):
        return None
    return JobRecord(
        seq=msg.metadata.sequence.stream,
        kind=kind,  # type: ignore[arg-type]  # checked against KINDS above
        attempt=int(headers.get("Suanli-Attempt", "0") or 0),
        node=node_of(msg.subject),
        time=msg.metadata.timestamp,
        body=body,
    )


class JetStreamJobMetrics:
    """`JobMetrics` over a JetStream context (resolved on use: the broker connects after the app
    is built)."""

    def __init__(self, jetstream: Callable[[], JetStreamContext]) -> None:
        self._jetstream = jetstream

    async def records(self, job_id: str) -> list[JobRecord]:
        found: list[JobRecord] = []
        async with open_subject(self._jetstream(), METRICS.name, job_metrics_filter(job_id)) as cursor:
            async for msg in cursor.drain(0, DRAIN_TIMEOUT_S):
                if (record := _record(msg)) is not None:
                    found.append(record)
        return found
