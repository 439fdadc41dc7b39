"""The daily token quota at the edge of the inference routes: 429 `insufficient_quota` with a
Retry-After once today's tokens are used up, auth's status cached per user for a short TTL with
one lookup in flight, and requests let through when auth cannot answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs
from test_inference_routes import CHAT, RecordingSink, public_routes, serve_replica

from conftest import Gateway
from suanli_common.errors import Unavailable
from suanli_inference_gateway.clients.auth import QuotaStatus
from suanli_inference_gateway.openai.inference.limits import InferenceLimits
from suanli_inference_gateway.openai.inference.quota import QuotaExceeded, TokenQuotaGate
from suanli_inference_gateway.openai.inference.replica_client import ReplicaPool
from suanli_inference_gateway.openai.inference.service import Inference
from suanli_inference_gateway.openai.inference.upstream import Upstream
from suanli_inference_gateway.settings import GatewaySettings

QUOTA_TTL_S = 0.3  # each request of the replica stand-in uses 10 tokens


def next_midnight() -> datetime:
    return datetime.combine(datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), UTC)


@pytest.fixture
async def inference(gateway: Gateway) -> AsyncIterator[RecordingSink]:
    sink = RecordingSink()
    pool = ReplicaPool()
    async with serve_replica() as url:
        gateway.deps.inference = Inference(
            routes=public_routes(url),
            upstream=Upstream(pool),
            limits=InferenceLimits(1000, 1_000_000),
            usage=sink,
            quota=TokenQuotaGate(gateway.deps.auth, QUOTA_TTL_S),
        )
        yield sink
    await pool.aclose()


def set_quota(gateway: Gateway, *, limit: int, used: int, email: str = "ada@example.com") -> None:
    user_id = gateway.user_id(email)
    gateway.auth.servicer.quotas.setdefault(user_id, {})["tokens_per_day"] = limit
    gateway.auth.servicer.tokens_today[user_id] = used


def use_ttl(gateway: Gateway, ttl_s: float) -> None:
    assert gateway.deps.inference is not None
    gateway.deps.inference.quota = TokenQuotaGate(gateway.deps.auth, ttl_s)


async def key(gateway: Gateway) -> dict[str, str]:
    created = await gateway.new_api_key(await gateway.sign_in())
    return {"Authorization": f"Bearer {created['key']}"}


async def chat(gateway: Gateway, headers: dict[str, str]) -> httpx.Response:
    return await gateway.http.post("/v1/chat/completions", json=CHAT, headers=headers)


async def test_a_used_up_quota_is_429_insufficient_quota_until_midnight(
    gateway: Gateway, inference: RecordingSink
) -> None:
    headers = await key(gateway)
    set_quota(gateway, limit=1000, used=1000)
    response = await chat(gateway, headers)
    assert response.status_code == 429, response.text
    midnight = next_midnight()
    assert response.json()["error"] == {
        "message": "daily token quota reached: 1000 of 1000 tokens used today; it resets at "
        f"{midnight.isoformat().replace('+00:00', 'Z')} (UTC midnight)",
        "type": "insufficient_quota",
        "param": "tokens_per_day",
        "code": "quota_exceeded",
    }
    expected_wait = (midnight - datetime.now(UTC)).total_seconds()
    assert abs(int(response.headers["Retry-After"]) - expected_wait) <= 2
    assert inference.records == []  # the replica never saw it


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"model": "smollm2", "prompt": "Hello"}),
        ("/v1/embeddings", {"model": "smollm2", "input": "Hello"}),
    ],
)
async def test_every_inference_route_checks_the_quota(
    gateway: Gateway, inference: RecordingSink, path: str, body: dict[str, Any]
) -> None:
    headers = await key(gateway)
    set_quota(gateway, limit=10, used=25)  # over: a lowered limit, or requests that ran long
    response = await gateway.http.post(path, json=body, headers=headers)
    assert response.status_code == 429 and response.json()["error"]["code"] == "quota_exceeded"
    assert "25 of 10 tokens" in response.json()["error"]["message"]


async def test_under_the_quota_requests_pass_and_their_tokens_count_at_once(
    gateway: Gateway, inference: RecordingSink
) -> None:
    headers = await key(gateway)
    set_quota(gateway, limit=15, used=0)
    use_ttl(gateway, 60.0)  # auth's count never changes here: only the gateway's own does
    assert (await chat(gateway, headers)).status_code == 200  # 10 tokens
    assert (await chat(gateway, headers)).status_code == 200  # 20: a request may overdraw
    refused = await chat(gateway, headers)
    assert refused.status_code == 429 and "20 of 15 tokens" in refused.json()["error"]["message"]
    assert gateway.auth.servicer.calls["GetQuotaStatus"] == 1


async def test_without_a_quota_tokens_are_not_limited_and_auth_is_asked_once_per_ttl(
    gateway: Gateway, inference: RecordingSink
) -> None:
    headers = await key(gateway)
    use_ttl(gateway, 60.0)
    for _ in range(5):
        assert (await chat(gateway, headers)).status_code == 200
    assert gateway.auth.servicer.calls["GetQuotaStatus"] == 1


async def test_a_raised_limit_takes_effect_after_the_ttl(gateway: Gateway, inference: RecordingSink) -> None:
    headers = await key(gateway)
    set_quota(gateway, limit=100, used=100)
    assert (await chat(gateway, headers)).status_code == 429
    set_quota(gateway, limit=10_000, used=100)
    assert (await chat(gateway, headers)).status_code == 429  # still the cached status
    await asyncio.sleep(QUOTA_TTL_S + 0.05)
    assert (await chat(gateway, headers)).status_code == 200
    assert gateway.auth.servicer.calls["GetQuotaStatus"] == 2


async def test_concurrent_requests_share_one_lookup(gateway: Gateway, inference: RecordingSink) -> None:
    headers = await key(gateway)
    set_quota(gateway, limit=10_000, used=0)
    use_ttl(gateway, 60.0)
    answers = await asyncio.gather(*(chat(gateway, headers) for _ in range(10)))
    assert [a.status_code for a in answers] == [200] * 10
    assert gateway.auth.servicer.calls["GetQuotaStatus"] == 1


async def test_the_quota_is_per_user(gateway: Gateway, inference: RecordingSink) -> None:
    ada = await key(gateway)
    set_quota(gateway, limit=5, used=5)
    eve = await gateway.new_api_key(await gateway.sign_in("eve@example.com"))
    assert (await chat(gateway, ada)).status_code == 429
    assert (await chat(gateway, {"Authorization": f"Bearer {eve['key']}"})).status_code == 200


async def test_when_auth_is_unreachable_requests_go_through(
    gateway: Gateway, inference: RecordingSink
) -> None:
    token = await gateway.sign_in()
    headers = {"Authorization": f"Bearer {token}"}  # an access token: verified without auth
    set_quota(gateway, limit=1, used=1)
    assert (await gateway.http.get("/v1/models", headers=headers)).status_code == 200  # keys fetched
    await gateway.auth.stop()
    with capture_logs() as logs:
        response = await chat(gateway, headers)
    assert response.status_code == 200, response.text
    assert any(entry["log_level"] == "warning" and "token quota" in entry["event"] for entry in logs), logs
    assert len(inference.records) == 1


def test_the_cache_ttl_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GatewaySettings().quota_cache_s == 2.0
    monkeypatch.setenv("SUANLI_QUOTA_CACHE_S", "0.5")
    assert GatewaySettings().quota_cache_s == 0.5


# -- the gate on its own: what the routes cannot show deterministically --


class BlockingQuotas:
    """Answers GetQuotaStatus once `release` is set; counts the calls."""

    def __init__(self, statuses: list[QuotaStatus]) -> None:
        self.statuses = statuses
        self.calls = 0
        self.release = asyncio.Event()
        self.fail = False

    async def get_quota_status(self, user_id: str, *, timeout: float | None = None) -> list[QuotaStatus]:
        self.calls += 1
        await self.release.wait()
        if self.fail:
            raise Unavailable("a platform service is unavailable; try again shortly")
        return self.statuses


def exhausted(resets_at: datetime) -> list[QuotaStatus]:
    return [QuotaStatus(resource="tokens_per_day", limit=10, used=10, resets_at=resets_at)]


async def test_a_waiter_that_goes_away_does_not_cancel_the_lookup_of_the_others() -> None:
    source = BlockingQuotas([])
    gate = TokenQuotaGate(source, 60.0)
    first = asyncio.ensure_future(gate.check("user_a"))
    second = asyncio.ensure_future(gate.check("user_a"))
    await asyncio.sleep(0)
    first.cancel()
    source.release.set()
    await second  # no quota: passes
    assert source.calls == 1


async def test_a_failed_lookup_lets_requests_through_and_is_not_retried_within_the_ttl() -> None:
    now = [100.0]
    source = BlockingQuotas(exhausted(next_midnight()))
    source.fail = True
    source.release.set()
    gate = TokenQuotaGate(source, 2.0, clock=lambda: now[0])
    await gate.check("user_a")
    await gate.check("user_a")
    assert source.calls == 1
    now[0] += 2.0
    source.fail = False
    with pytest.raises(QuotaExceeded) as raised:
        await gate.check("user_a")
    assert raised.value.retry_after is not None and raised.value.retry_after >= 1
    assert source.calls == 2


async def test_a_count_from_yesterday_refuses_nothing() -> None:
    source = BlockingQuotas(exhausted(datetime(2026, 11, 2, tzinfo=UTC)))
    source.release.set()
    gate = TokenQuotaGate(source, 60.0, now=lambda: datetime(2026, 11, 2, 0, 0, 1, tzinfo=UTC))
    await gate.check("user_a")  # a new day began since auth counted


async def test_the_cache_stays_bounded() -> None:
    source = BlockingQuotas([])
    source.release.set()
    gate = TokenQuotaGate(source, 60.0, max_entries=3)
    for n in range(10):
        await gate.check(f"user_{n}")
    assert len(gate._entries) == 3
