"""The GPU quotas the scheduler enforces come from auth, which owns quotas: each `quota.set` fact
for a "gpu:<type>" resource ("gpu:*": any type) becomes a row of the scheduler's quota table.
A durable consumer, so quotas set while the scheduler was down arrive when it is back."""

from __future__ import annotations

from typing import Protocol

from faststream.nats import NatsBroker

from suanli_common.bus import Event, subscribe_events
from suanli_common.proto.suanli.v1.events_pb2 import QuotaChanged

QUOTA_SET = "quota.set"
QUOTAS_CONSUMER = "scheduler-quotas"
GPU_RESOURCE_PREFIX = "gpu:"


class QuotaSink(Protocol):
    async def set_quota(self, owner_id: str, gpu_type: str, max_gpus: int, version: int = 0) -> None: ...


def gpu_type_of(resource: str) -> str | None:
    """The GPU type a quota resource limits, or None for resources the scheduler does not enforce."""
    if not resource.startswith(GPU_RESOURCE_PREFIX):
        return None
    return resource.removeprefix(GPU_RESOURCE_PREFIX) or None


def subscribe_quotas(broker: NatsBroker, sink: QuotaSink) -> None:
    async def on_quota_set(event: Event[QuotaChanged]) -> None:
        gpu_type = gpu_type_of(event.data.resource)
        if gpu_type is not None:
            quota = event.data
            await sink.set_quota(quota.user_id, gpu_type, int(quota.limit), version=quota.version)

    subscribe_events(broker, QUOTA_SET, QuotaChanged, on_quota_set, durable=QUOTAS_CONSUMER)
