"""A short-lived, bounded, in-process cache of resolved API keys, in front of auth's `Authenticate`.

Entries are keyed by the sha256 of the key, never the key itself, and carry the key's prefix and
id so that a `key.revoked` event (which names only those) can drop them. A warm hit costs one
sha256 and one dict lookup. Rejections are remembered briefly too, so a client retrying with a
bad key does not hammer auth, yet a key created a moment ago works almost at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from suanli_common.errors import SuanliError, Unauthenticated
from suanli_inference_gateway.clients.auth import Principal

KEY_PREFIX_LENGTH = 12


@dataclass(slots=True)
class _Entry:
    expires_at: float
    prefix: str
    principal: Principal | None  # None: rejected, `error` says how
    error: SuanliError | None


def _prefixes_match(a: str, b: str) -> bool:
    # auth's notion of a prefix may be shorter or longer than ours; either way the shorter one
    # must open the longer one. Dropping an extra entry on a collision costs one call to auth.
    return bool(a) and bool(b) and (a.startswith(b) or b.startswith(a))


class ApiKeyCache:
    def __init__(
        self,
        ttl_s: float,
        *,
        negative_ttl_s: float = 2.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_s
        self._negative_ttl = negative_ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: dict[bytes, _Entry] = {}
        self._inflight: dict[bytes, asyncio.Future[Principal]] = {}
        # Bumped by every invalidation: a lookup that started before one must not cache what it
        # learned, since auth may have answered before the revocation was committed.
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def resolve(self, credential: str, lookup: Callable[[str], Awaitable[Principal]]) -> Principal:
        digest = hashlib.sha256(credential.encode()).digest()
        entry = self._entries.get(digest)
        if entry is not None and entry.expires_at > self._clock():
            if entry.principal is not None:
                return entry.principal
            assert entry.error is not None
            raise entry.error
        pending = self._inflight.get(digest)
        if pending is not None:  # one call to auth per key, however many requests wait for it
            return await asyncio.shield(pending)
        return await self._miss(digest, credential, lookup)

    async def _miss(
        self, digest: bytes, credential: str, lookup: Callable[[str], Awaitable[Principal]]
    ) -> Principal:
        future: asyncio.Future[Principal] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        generation = self._generation
        prefix = credential[:KEY_PREFIX_LENGTH]
        try:
            principal = await lookup(credential)
        except Unauthenticated as exc:
            if generation == self._generation:
                self._store(digest, _Entry(self._clock() + self._negative_ttl, prefix, None, exc))
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        except BaseException as exc:  # auth unavailable, cancelled: nothing to remember
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()
            else:
                future.cancel()
            raise
        finally:
            self._inflight.pop(digest, None)
        if generation == self._generation:
            self._store(digest, _Entry(self._clock() + self._ttl, prefix, principal, None))
        future.set_result(principal)
        return principal

    def _store(self, digest: bytes, entry: _Entry) -> None:
        if len(self._entries) >= self._max and digest not in self._entries:
            self._evict()
        self._entries[digest] = entry

    def _evict(self) -> None:
        now = self._clock()
        expired = [d for d, e in self._entries.items() if e.expires_at <= now]
        for digest in expired:
            del self._entries[digest]
        while len(self._entries) >= self._max:  # still full: drop the oldest insertions
            del self._entries[next(iter(self._entries))]

    def invalidate(self, *, key_prefix: str = "", key_id: str = "") -> int:
        """Drops the entries of a revoked key; returns how many."""
        self._generation += 1
        doomed = [
            digest
            for digest, entry in self._entries.items()
            if _prefixes_match(entry.prefix, key_prefix)
            or (key_id and entry.principal is not None and entry.principal.key_id == key_id)
        ]
        for digest in doomed:
            del self._entries[digest]
        return len(doomed)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
