"""Keeps the API key cache honest: every gateway instance hears every `key.revoked` event."""

from __future__ import annotations

from typing import Any

from faststream.nats import NatsBroker

from suanli_common.bus import Event, subscribe_events
from suanli_common.logging import get_logger
from suanli_common.proto.suanli.v1.events_pb2 import ApiKeyRevoked
from suanli_inference_gateway.authentication.key_cache import ApiKeyCache

log = get_logger(__name__)


def subscribe_key_revocations(broker: NatsBroker, cache: ApiKeyCache) -> Any:
    async def on_key_revoked(event: Event[ApiKeyRevoked]) -> None:
        dropped = cache.invalidate(key_prefix=event.data.key_prefix, key_id=event.data.key_id)
        log.info("api key revoked", key_id=event.data.key_id, cache_entries_dropped=dropped)

    # No durable name: a durable consumer would hand each event to one instance only, and
    # every instance has its own cache to clean.
    return subscribe_events(broker, "key.revoked", ApiKeyRevoked, on_key_revoked)
