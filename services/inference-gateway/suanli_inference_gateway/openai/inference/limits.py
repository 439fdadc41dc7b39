"""Per-key inference limits: requests per minute and tokens per minute (prompt + completion).

Requests are counted when they arrive; tokens only once the engine has said how many a request
used, so a key may overdraw its token budget by one request, and then waits until it refills.
A caller without an API key (a console session) is limited per user. Per gateway process, like
the sign-in limits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from suanli_common.errors import RateLimited
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.ratelimit import TokenBucketLimiter


@dataclass(slots=True)
class _Budget:
    balance: float
    updated: float


class TokenBudget:
    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._budgets: dict[str, _Budget] = {}

    def _refill(self, key: str) -> _Budget:
        now = self._clock()
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = _Budget(self._capacity, now)
        else:
            budget.balance = min(self._capacity, budget.balance + (now - budget.updated) * self._rate)
            budget.updated = now
        return budget

    def wait_s(self, key: str) -> float:
        """0.0 when the key may start a request, else how long until its budget is positive."""
        budget = self._refill(key)
        return 0.0 if budget.balance > 0 else (1.0 - budget.balance) / self._rate

    def spend(self, key: str, tokens: int) -> None:
        self._refill(key).balance -= tokens


class InferenceLimits:
    def __init__(self, requests_per_minute: int, tokens_per_minute: int) -> None:
        self._requests = TokenBucketLimiter(requests_per_minute, 60.0)
        self._tokens = TokenBudget(tokens_per_minute)

    @staticmethod
    def key_of(principal: Principal) -> str:
        return f"key:{principal.key_id}" if principal.key_id else f"user:{principal.user_id}"

    def admit(self, principal: Principal) -> None:
        key = self.key_of(principal)
        wait = self._tokens.wait_s(key)
        if wait:
            raise RateLimited(
                "Rate limit reached for tokens per minute on this API key. Please try again later.",
                code="rate_limit_exceeded",
                retry_after=math.ceil(wait),
            )
        wait = self._requests.acquire(key)
        if wait:
            raise RateLimited(
                "Rate limit reached for requests per minute on this API key. Please try again later.",
                code="rate_limit_exceeded",
                retry_after=math.ceil(wait),
            )

    def spend(self, principal: Principal, tokens: int) -> None:
        self._tokens.spend(self.key_of(principal), tokens)
