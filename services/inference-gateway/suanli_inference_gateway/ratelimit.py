"""In-memory rate limits of the sign-in endpoints (password guessing, e-mail code flooding).

Token buckets: each key (a client IP, an e-mail address) holds up to `limit` tokens and gains
`limit` per `window_s`; every attempt takes one. Per process: with N gateway instances behind a
balancer an attacker gets at most N times the limit, which is still a wall against guessing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from suanli_common.errors import RateLimited


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window_s > 0")
        self._capacity = float(limit)
        self._rate = limit / window_s  # tokens per second
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str) -> float:
        """Takes a token; returns 0.0, or the seconds to wait when there is none (nothing taken)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self._capacity, now)
        else:
            bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def _prune(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket.
        full = [
            k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self._rate >= self._capacity
        ]
        for key in full:
            del self._buckets[key]
        while len(self._buckets) >= self._max_keys:
            del self._buckets[next(iter(self._buckets))]


class SignInLimiter:
    """Per client IP and per account (lower-cased e-mail); every attempt counts."""

    def __init__(self, per_ip: TokenBucketLimiter, per_account: TokenBucketLimiter) -> None:
        self._per_ip = per_ip
        self._per_account = per_account

    @classmethod
    def per_minute(
        cls,
        per_ip: int,
        per_account: int,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> SignInLimiter:
        return cls(
            TokenBucketLimiter(per_ip, window_s, clock=clock),
            TokenBucketLimiter(per_account, window_s, clock=clock),
        )

    def check(self, client_ip: str, email: str) -> None:
        wait = self._per_ip.acquire(client_ip)
        if wait:
            raise RateLimited(
                "Too many sign-in attempts from your address. Please try again later.",
                code="rate_limit_exceeded",
                retry_after=math.ceil(wait),
            )
        wait = self._per_account.acquire(email.strip().lower())
        if wait:
            raise RateLimited(
                "Too many sign-in attempts for this account. Please try again later.",
                code="rate_limit_exceeded",
                retry_after=math.ceil(wait),
            )
