"""`usage.recorded`: one event per answered inference request, for metering and quotas. Published
after the response, off the request's path; a bus that is down loses the record, not the answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from suanli_common.bus import EventPublisher
from suanli_common.ids import new_id
from suanli_common.logging import get_logger
from suanli_common.proto.suanli.v1.events_pb2 import UsageRecorded
from suanli_inference_gateway.metrics import TokenMetrics

log = get_logger(__name__)


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


class EventUsageSink:
    def __init__(self, publisher: EventPublisher, tokens: TokenMetrics | None = None) -> None:
        self._publisher = publisher
        self._tokens = tokens
        self._pending: set[asyncio.Task[None]] = set()

    def record(self, usage: Usage) -> None:
        if self._tokens is not None:
            self._tokens.count(usage.model, usage.prompt_tokens, usage.completion_tokens)
        task = asyncio.get_running_loop().create_task(self._publish(usage))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, usage: Usage) -> None:
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
        try:
            await self._publisher.publish("usage.recorded", request_id, payload)
        except Exception as exc:
            log.warning("usage record lost", error=str(exc), user_id=usage.user_id, model=usage.model)
