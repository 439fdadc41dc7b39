"""The API key cache: warm hits skip auth, revocations (local and over NATS) drop entries."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from suanli_common.bus import EventPublisher, declare_streams, make_broker
from suanli_common.errors import Unauthenticated, Unavailable
from suanli_common.proto.suanli.v1.events_pb2 import ApiKeyRevoked
from suanli_common.testing import NatsServer
from suanli_inference_gateway.authentication.authenticator import Authenticator
from suanli_inference_gateway.authentication.key_cache import ApiKeyCache
from suanli_inference_gateway.authentication.revocations import subscribe_key_revocations
from suanli_inference_gateway.clients.auth import Principal

if TYPE_CHECKING:
    from conftest import Gateway

ADA = Principal(user_id="user_1", email="ada@example.com", role="user", key_id="key_1")


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the cache has no change notification to wait on
            await asyncio.sleep(0.02)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingLookup:
    def __init__(self, principal: Principal | None = ADA, error: Exception | None = None) -> None:
        self.calls = 0
        self.principal = principal
        self.error = error

    async def __call__(self, credential: str) -> Principal:
        self.calls += 1
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        assert self.principal is not None
        return self.principal


async def test_warm_hit_does_not_call_auth_again(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    key = (await gateway.new_api_key(token))["key"]
    for _ in range(5):
        response = await gateway.http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
    assert gateway.auth.servicer.calls["Authenticate"] == 1


async def test_bad_key_is_401_and_briefly_remembered(gateway: Gateway) -> None:
    for _ in range(3):
        response = await gateway.http.get("/api/v1/auth/me", headers={"Authorization": "Bearer sk-not-a-key"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert gateway.auth.servicer.calls["Authenticate"] == 1


async def test_revocation_event_invalidates_every_gateways_cache(
    gateway: Gateway, nats_server: NatsServer
) -> None:
    broker = make_broker(nats_server.url, service="gateway")
    cache = gateway.deps.authenticator.key_cache
    subscribe_key_revocations(broker, cache)
    await broker.connect()
    await declare_streams(broker)
    await broker.start()
    try:
        token = await gateway.sign_in()
        created = await gateway.new_api_key(token)
        bearer = {"Authorization": f"Bearer {created['key']}"}
        assert (await gateway.http.get("/api/v1/auth/me", headers=bearer)).status_code == 200
        assert len(cache) == 1

        # Revoked at auth by another gateway instance: this one only hears the event.
        gateway.auth.servicer.keys[created["id"]].revoked_at = time.time()
        assert (await gateway.http.get("/api/v1/auth/me", headers=bearer)).status_code == 200, "still cached"
        event = ApiKeyRevoked(key_id=created["id"], user_id="user_x", key_prefix=created["prefix"])
        await EventPublisher(broker, source="auth").publish("key.revoked", created["id"], event)
        await wait_until(lambda: len(cache) == 0)
        response = await gateway.http.get("/api/v1/auth/me", headers=bearer)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    finally:
        await broker.stop()


async def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = ApiKeyCache(30.0, negative_ttl_s=2.0, clock=clock)
    lookup = CountingLookup()
    await cache.resolve("sk-abc", lookup)
    clock.now += 29
    await cache.resolve("sk-abc", lookup)
    assert lookup.calls == 1
    clock.now += 2
    await cache.resolve("sk-abc", lookup)
    assert lookup.calls == 2


async def test_rejections_expire_quickly_and_outages_are_not_cached() -> None:
    clock = Clock()
    cache = ApiKeyCache(30.0, negative_ttl_s=2.0, clock=clock)
    rejecting = CountingLookup(error=Unauthenticated("no", code="invalid_api_key"))
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await cache.resolve("sk-new", rejecting)
    assert rejecting.calls == 1
    clock.now += 2.5
    assert await cache.resolve("sk-new", CountingLookup()) == ADA  # the key exists now

    down = CountingLookup(error=Unavailable("auth is down"))
    for _ in range(2):
        with pytest.raises(Unavailable):
            await cache.resolve("sk-other", down)
    assert down.calls == 2


async def test_concurrent_misses_make_one_call() -> None:
    cache = ApiKeyCache(30.0)
    lookup = CountingLookup()
    results = await asyncio.gather(*(cache.resolve("sk-same", lookup) for _ in range(20)))
    assert lookup.calls == 1 and all(r == ADA for r in results)


async def test_invalidate_by_prefix_or_key_id() -> None:
    cache = ApiKeyCache(30.0)
    await cache.resolve("sk-aaaaaaaaaaaaaaaa", CountingLookup(ADA))
    other = Principal(user_id="user_2", email="bob@example.com", role="user", key_id="key_2")
    await cache.resolve("sk-bbbbbbbbbbbbbbbb", CountingLookup(other))
    assert cache.invalidate(key_prefix="") == 0, "an empty prefix matches nothing"
    assert cache.invalidate(key_prefix="sk-aaaaa") == 1, "auth's prefix may be shorter than ours"
    assert cache.invalidate(key_id="key_2") == 1
    assert len(cache) == 0


async def test_a_lookup_racing_a_revocation_is_not_cached() -> None:
    cache = ApiKeyCache(30.0)
    release = asyncio.Event()

    async def slow(credential: str) -> Principal:
        await release.wait()
        return ADA

    pending = asyncio.ensure_future(cache.resolve("sk-racing-key", slow))
    await asyncio.sleep(0)
    cache.invalidate(key_prefix="sk-racing-ke")
    release.set()
    assert await pending == ADA
    assert len(cache) == 0


async def test_the_cache_is_bounded() -> None:
    cache = ApiKeyCache(30.0, max_entries=100)
    lookup = CountingLookup()
    for i in range(250):
        await cache.resolve(f"sk-{i}", lookup)
    assert len(cache) <= 100


async def test_warm_authentication_is_cheap(gateway: Gateway) -> None:
    authenticator: Authenticator = gateway.deps.authenticator
    token = await gateway.sign_in()
    key = (await gateway.new_api_key(token))["key"]
    await authenticator.authenticate(key)
    samples = []
    for _ in range(2000):
        start = time.perf_counter()
        await authenticator.authenticate(key)
        samples.append(time.perf_counter() - start)
    assert statistics.median(samples) < 0.0003, f"median {statistics.median(samples) * 1e6:.1f} µs"
