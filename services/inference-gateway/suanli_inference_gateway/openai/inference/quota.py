"""The daily token quota at the edge: an inference request is refused (429 `insufficient_quota`)
before it reaches a replica when the caller's `tokens_per_day` quota is used up.

What is used comes from auth (`GetQuotaStatus`: tokens in and out today, UTC), cached per user for
a short TTL with one lookup in flight per user, so a warm check is a dict lookup. Tokens this
gateway saw being spent are added to the cached count in between, which stops a user at the limit
sooner than auth's count (fed by usage.recorded events) would. A quota is a budget, not a hard
wall: requests already running finish, so a user may end the day a little over. When auth cannot
answer, requests go through: metering must not take inference down.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from suanli_common.errors import RateLimited
from suanli_common.logging import get_logger
from suanli_inference_gateway.clients.auth import QuotaStatus

log = get_logger(__name__)

TOKENS_PER_DAY = "tokens_per_day"


class QuotaExceeded(RateLimited):
    """OpenAI's error for a used-up quota: 429 with type `insufficient_quota`."""

    error_type = "insufficient_quota"


class QuotaStatusSource(Protocol):
    async def get_quota_status(self, user_id: str, *, timeout: float | None = None) -> list[QuotaStatus]: ...


@dataclass(slots=True)
class _Entry:
    expires_at: float  # on the monotonic clock
    limit: int | None  # None: no tokens_per_day quota, or auth could not say
    used: int
    resets_at: datetime | None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _next_utc_midnight(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)


class TokenQuotaGate:
    def __init__(
        self,
        auth: QuotaStatusSource,
        ttl_s: float,
        *,
        lookup_timeout_s: float = 1.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._auth = auth
        self._ttl = ttl_s
        self._lookup_timeout = lookup_timeout_s
        self._max = max_entries
        self._clock = clock
        self._now = now
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[_Entry]] = {}

    async def check(self, user_id: str) -> None:
        """Nothing when the user may send a request; `QuotaExceeded` when today's tokens are used up."""
        entry = self._entries.get(user_id)
        if entry is None or entry.expires_at <= self._clock():
            entry = await self._refresh(user_id)
        if entry.limit is not None and entry.used >= entry.limit:
            self._refuse(entry)

    def spend(self, user_id: str, tokens: int) -> None:
        """Counts tokens a request of the user used, until auth's next answer replaces the count."""
        entry = self._entries.get(user_id)
        if entry is not None and entry.limit is not None:
            entry.used += tokens

    def _refuse(self, entry: _Entry) -> None:
        assert entry.limit is not None
        now = self._now()
        resets_at = entry.resets_at or _next_utc_midnight(now)
        if resets_at <= now:  # a new day began since auth answered: its count is stale
            return
        iso = resets_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        raise QuotaExceeded(
            f"daily token quota reached: {entry.used} of {entry.limit} tokens used today; "
            f"it resets at {iso} (UTC midnight)",
            param=TOKENS_PER_DAY,
            code="quota_exceeded",
            retry_after=max(1, math.ceil((resets_at - now).total_seconds())),
        )

    async def _refresh(self, user_id: str) -> _Entry:
        lookup = self._inflight.get(user_id)
        if lookup is None:  # one call to auth per user, however many requests wait for it
            lookup = self._inflight[user_id] = asyncio.ensure_future(self._lookup(user_id))
        # Shielded: a client that goes away must not cancel the lookup others wait for.
        return await asyncio.shield(lookup)

    async def _lookup(self, user_id: str) -> _Entry:
        try:
            statuses = await self._auth.get_quota_status(user_id, timeout=self._lookup_timeout)
        except Exception as exc:
            log.warning(
                "cannot read the token quota from auth; letting the user's requests through",
                user_id=user_id,
                error=str(exc),
            )
            entry = _Entry(self._clock() + self._ttl, None, 0, None)
        else:
            quota = next((s for s in statuses if s.resource == TOKENS_PER_DAY), None)
            entry = _Entry(
                self._clock() + self._ttl,
                quota.limit if quota else None,
                quota.used if quota else 0,
                quota.resets_at if quota else None,
            )
        finally:
            self._inflight.pop(user_id, None)
        self._store(user_id, entry)
        return entry

    def _store(self, user_id: str, entry: _Entry) -> None:
        if len(self._entries) >= self._max and user_id not in self._entries:
            now = self._clock()
            for stale in [u for u, e in self._entries.items() if e.expires_at <= now]:
                del self._entries[stale]
            while len(self._entries) >= self._max:  # still full: drop the oldest insertions
                del self._entries[next(iter(self._entries))]
        self._entries[user_id] = entry
