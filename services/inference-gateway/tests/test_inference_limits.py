"""Per-key inference limits: requests per minute and tokens per minute."""

from __future__ import annotations

import pytest

from suanli_common.errors import RateLimited
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.openai.inference.limits import InferenceLimits, TokenBudget

ALICE = Principal(user_id="user_a", email="a@example.com", role="user", key_id="key_1")


def test_requests_beyond_the_limit_get_a_retry_after() -> None:
    limits = InferenceLimits(requests_per_minute=2, tokens_per_minute=1_000_000)
    limits.admit(ALICE)
    limits.admit(ALICE)
    with pytest.raises(RateLimited) as raised:
        limits.admit(ALICE)
    assert raised.value.retry_after is not None and 0 < raised.value.retry_after <= 30
    # Another key of the same user has its own budget.
    limits.admit(Principal(user_id="user_a", email="a@example.com", role="user", key_id="key_2"))


def test_a_key_that_used_its_tokens_waits_until_they_refill() -> None:
    now = [0.0]
    budget = TokenBudget(600, clock=lambda: now[0])  # 10 tokens a second
    assert budget.wait_s("k") == 0.0
    budget.spend("k", 650)  # one request may overdraw
    assert budget.wait_s("k") == pytest.approx(5.1)
    now[0] = 5.2
    assert budget.wait_s("k") == 0.0


def test_token_limit_refuses_with_429() -> None:
    limits = InferenceLimits(requests_per_minute=100, tokens_per_minute=60)
    limits.admit(ALICE)
    limits.spend(ALICE, 200)
    with pytest.raises(RateLimited) as raised:
        limits.admit(ALICE)
    assert "tokens per minute" in raised.value.message
