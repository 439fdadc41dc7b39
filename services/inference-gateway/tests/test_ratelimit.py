"""Sign-in attempts are limited per client IP and per account."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from suanli_common.errors import RateLimited
from suanli_inference_gateway.ratelimit import SignInLimiter, TokenBucketLimiter

if TYPE_CHECKING:
    from conftest import Gateway


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_per_account_limit_is_429_with_retry_after(gateway: Gateway) -> None:
    body = {"email": "Target@Example.com", "password": "guess"}
    for _ in range(gateway.settings.signin_limit_per_account):
        response = await gateway.http.post("/api/v1/auth/login", json=body)
        assert response.status_code == 401
    response = await gateway.http.post("/api/v1/auth/login", json={**body, "email": "target@example.com"})
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60


async def test_per_ip_limit_covers_email_codes_too(gateway: Gateway) -> None:
    for i in range(gateway.settings.signin_limit_per_ip):
        response = await gateway.http.post("/api/v1/auth/email-code", json={"email": f"u{i}@example.com"})
        assert response.status_code == 202
    response = await gateway.http.post(
        "/api/v1/auth/login", json={"email": "new@example.com", "password": "x"}
    )
    assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
    assert "address" in response.json()["error"]["message"]


def test_bucket_refills_over_the_window() -> None:
    clock = Clock()
    bucket = TokenBucketLimiter(10, 60.0, clock=clock)
    assert all(bucket.acquire("k") == 0.0 for _ in range(10))
    assert bucket.acquire("k") == pytest.approx(6.0)
    clock.now += 6.0
    assert bucket.acquire("k") == 0.0
    assert bucket.acquire("other") == 0.0, "keys are independent"


def test_bucket_keys_are_bounded() -> None:
    clock = Clock()
    bucket = TokenBucketLimiter(1, 60.0, max_keys=10, clock=clock)
    for i in range(100):
        bucket.acquire(f"ip-{i}")
    assert len(bucket._buckets) <= 10


def test_limiter_rejects_before_taking_an_account_token() -> None:
    clock = Clock()
    limiter = SignInLimiter.per_minute(per_ip=1, per_account=5, clock=clock)
    limiter.check("1.2.3.4", "a@example.com")
    with pytest.raises(RateLimited) as raised:
        limiter.check("1.2.3.4", "a@example.com")
    assert raised.value.retry_after == 60
    assert limiter._per_account.acquire("a@example.com") == 0.0
