"""Quotas (admin only) and the events auth publishes on NATS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from suanli_auth.main import RunningAuth
from suanli_common.bus import Event, make_broker, subscribe_events
from suanli_common.errors import InvalidRequest, PermissionDenied
from suanli_common.proto.suanli.v1 import auth_pb2, events_pb2
from suanli_common.testing import NatsServer

if TYPE_CHECKING:
    from faststream.nats import NatsBroker

    from suanli_common.proto.suanli.v1.auth_pb2_grpc import AuthServiceAsyncStub as Stub


async def test_only_admins_set_quotas(stub: Stub) -> None:
    user = await stub.SignUp(auth_pb2.SignUpRequest(email="ada@example.com", password="correct horse"))
    admin = await stub.SignUp(auth_pb2.SignUpRequest(email="boss@example.com", password="correct horse"))
    quota = auth_pb2.Quota(user_id=user.id, resource="gpu:A100-80G", limit=4)

    with pytest.raises(PermissionDenied):
        await stub.SetQuota(auth_pb2.SetQuotaRequest(actor_user_id=user.id, quota=quota))
    assert (await stub.ListQuotas(auth_pb2.ListQuotasRequest(user_id=user.id))).quotas == []

    saved = await stub.SetQuota(auth_pb2.SetQuotaRequest(actor_user_id=admin.id, quota=quota))
    assert (saved.resource, saved.limit) == ("gpu:A100-80G", 4)
    quota.limit = 8  # setting again updates, it does not add a second row
    await stub.SetQuota(auth_pb2.SetQuotaRequest(actor_user_id=admin.id, quota=quota))
    await stub.SetQuota(
        auth_pb2.SetQuotaRequest(
            actor_user_id=admin.id,
            quota=auth_pb2.Quota(user_id=user.id, resource="tokens_per_day", limit=0),
        )
    )
    listed = (await stub.ListQuotas(auth_pb2.ListQuotasRequest(user_id=user.id))).quotas
    assert [(q.resource, q.limit) for q in listed] == [("gpu:A100-80G", 8), ("tokens_per_day", 0)]

    for limit in (-1, 2**31):  # a GPU quota is a count the scheduler keeps in 32 bits
        quota.limit = limit
        with pytest.raises(InvalidRequest) as exc:
            await stub.SetQuota(auth_pb2.SetQuotaRequest(actor_user_id=admin.id, quota=quota))
        assert exc.value.param == "limit"


@pytest.fixture
async def test_broker(auth: RunningAuth, nats_server: NatsServer) -> AsyncIterator[NatsBroker]:
    # Made after the service, which declares the streams this subscriber reads.
    broker = make_broker(nats_server.url, service="auth-test")
    yield broker
    await broker.stop()


async def test_user_created_and_key_revoked_reach_nats(stub: Stub, test_broker: NatsBroker) -> None:
    users: asyncio.Queue[Event[events_pb2.UserCreated]] = asyncio.Queue()
    revoked: asyncio.Queue[Event[events_pb2.ApiKeyRevoked]] = asyncio.Queue()

    async def on_user(event: Event[events_pb2.UserCreated]) -> None:
        await users.put(event)

    async def on_revoked(event: Event[events_pb2.ApiKeyRevoked]) -> None:
        await revoked.put(event)

    subscribe_events(test_broker, "user.created", events_pb2.UserCreated, on_user)
    subscribe_events(test_broker, "key.revoked", events_pb2.ApiKeyRevoked, on_revoked)
    await test_broker.start()

    user = await stub.SignUp(auth_pb2.SignUpRequest(email="Ada@example.com", password="correct horse"))
    created = await asyncio.wait_for(users.get(), timeout=10)
    assert (created.type, created.source, created.subject) == ("user.created", "auth", user.id)
    assert (created.data.user_id, created.data.email, created.data.role) == (
        user.id,
        "ada@example.com",
        "user",
    )

    key = await stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(user_id=user.id, name="k"))
    await stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(user_id=user.id, key_id=key.api_key.id))
    await stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(user_id=user.id, key_id=key.api_key.id))
    event = await asyncio.wait_for(revoked.get(), timeout=10)
    assert (event.data.key_id, event.data.user_id, event.data.key_prefix) == (
        key.api_key.id,
        user.id,
        key.key[:12],
    )
    # The second revocation changed nothing, so it reported nothing.
    await asyncio.sleep(0.5)
    assert revoked.empty()


@pytest.mark.parametrize("resource", ["cpu", "gpu:", "gpu: ", "gpus:A100", "tokens", "gpu:" + "x" * 65])
async def test_quota_resources_are_checked(stub: Stub, resource: str) -> None:
    user = await stub.SignUp(auth_pb2.SignUpRequest(email="ada@example.com", password="correct horse"))
    admin = await stub.SignUp(auth_pb2.SignUpRequest(email="boss@example.com", password="correct horse"))
    quota = auth_pb2.Quota(user_id=user.id, resource=resource, limit=1)
    with pytest.raises(InvalidRequest) as exc:
        await stub.SetQuota(auth_pb2.SetQuotaRequest(actor_user_id=admin.id, quota=quota))
    assert (exc.value.param, exc.value.code) == ("resource", "invalid_resource")
    assert (await stub.ListQuotas(auth_pb2.ListQuotasRequest(user_id=user.id))).quotas == []


async def test_quota_set_reaches_nats(stub: Stub, test_broker: NatsBroker) -> None:
    changes: asyncio.Queue[Event[events_pb2.QuotaChanged]] = asyncio.Queue()

    async def on_quota(event: Event[events_pb2.QuotaChanged]) -> None:
        await changes.put(event)

    subscribe_events(test_broker, "quota.set", events_pb2.QuotaChanged, on_quota)
    await test_broker.start()

    user = await stub.SignUp(auth_pb2.SignUpRequest(email="ada@example.com", password="correct horse"))
    admin = await stub.SignUp(auth_pb2.SignUpRequest(email="boss@example.com", password="correct horse"))
    for resource, limit in (("gpu:*", 6), ("storage_bytes", 10**12), ("gpu:" + "x" * 64, 1)):
        await stub.SetQuota(
            auth_pb2.SetQuotaRequest(
                actor_user_id=admin.id, quota=auth_pb2.Quota(user_id=user.id, resource=resource, limit=limit)
            )
        )
    seen = [await asyncio.wait_for(changes.get(), timeout=10) for _ in range(3)]
    assert [(e.type, e.source, e.subject) for e in seen] == [("quota.set", "auth", user.id)] * 3
    assert [(e.data.user_id, e.data.resource, e.data.limit) for e in seen] == [
        (user.id, "gpu:*", 6),
        (user.id, "storage_bytes", 10**12),
        (user.id, "gpu:" + "x" * 64, 1),
    ]
    # Versions follow the order the quotas were set in, so a consumer can drop a stale one.
    versions = [e.data.version for e in seen]
    assert versions == sorted(versions) and versions[0] > 0
    # A refused change reports nothing.
    with pytest.raises(PermissionDenied):
        await stub.SetQuota(
            auth_pb2.SetQuotaRequest(
                actor_user_id=user.id, quota=auth_pb2.Quota(user_id=user.id, resource="gpu:*", limit=99)
            )
        )
    await asyncio.sleep(0.5)
    assert changes.empty()
