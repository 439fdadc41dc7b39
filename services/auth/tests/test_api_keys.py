"""API keys: create, list, authenticate, revoke, last-used tracking — through the real gRPC API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from suanli_common.errors import InvalidRequest, NotFound, Unauthenticated
from suanli_common.proto.suanli.v1 import auth_pb2

if TYPE_CHECKING:
    from suanli_common.proto.suanli.v1.auth_pb2_grpc import AuthServiceAsyncStub as Stub


async def new_user(stub: Stub, email: str = "ada@example.com") -> auth_pb2.User:
    return await stub.SignUp(auth_pb2.SignUpRequest(email=email, password="correct horse"))


async def test_api_key_lifecycle(stub: Stub) -> None:
    user = await new_user(stub)
    created = await stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(user_id=user.id, name=" laptop "))
    assert created.key.startswith("sk-") and len(created.key) == 3 + 48
    assert created.api_key.id.startswith("key_")
    assert created.api_key.name == "laptop"
    assert created.api_key.prefix == created.key[:12]
    assert not created.api_key.HasField("last_used_at")

    principal = await stub.Authenticate(auth_pb2.AuthenticateRequest(credential=created.key))
    assert (principal.user_id, principal.email, principal.role, principal.key_id) == (
        user.id,
        "ada@example.com",
        auth_pb2.ROLE_USER,
        created.api_key.id,
    )

    listed = await stub.ListApiKeys(auth_pb2.ListApiKeysRequest(user_id=user.id))
    assert [k.id for k in listed.api_keys] == [created.api_key.id]
    # The secret never leaves the service again: no field of the listing carries it.
    assert created.key not in listed.SerializeToString().decode(errors="ignore")

    revoked = await stub.RevokeApiKey(
        auth_pb2.RevokeApiKeyRequest(user_id=user.id, key_id=created.api_key.id)
    )
    assert revoked.HasField("revoked_at")
    with pytest.raises(Unauthenticated) as exc:
        await stub.Authenticate(auth_pb2.AuthenticateRequest(credential=created.key))
    assert exc.value.code == "invalid_api_key"

    # Revoking twice is idempotent and keeps the first revocation time.
    again = await stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(user_id=user.id, key_id=created.api_key.id))
    assert again.revoked_at == revoked.revoked_at


async def test_last_used_at_is_recorded_at_most_once_a_minute(stub: Stub, clock: Any) -> None:
    user = await new_user(stub)
    created = await stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(user_id=user.id, name="ci"))
    request = auth_pb2.AuthenticateRequest(credential=created.key)

    async def last_used() -> int:
        (key,) = (await stub.ListApiKeys(auth_pb2.ListApiKeysRequest(user_id=user.id))).api_keys
        assert key.HasField("last_used_at")
        return int(key.last_used_at.seconds)

    await stub.Authenticate(request)
    first = await last_used()
    assert first == int(clock.now.timestamp())

    clock.advance(30)
    await stub.Authenticate(request)
    assert await last_used() == first  # within the minute: no write

    clock.advance(31)
    await stub.Authenticate(request)
    assert await last_used() == first + 61


async def test_keys_are_private_to_their_owner(stub: Stub) -> None:
    ada = await new_user(stub)
    bob = await new_user(stub, "bob@example.com")
    key = await stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(user_id=ada.id, name="mine"))

    with pytest.raises(NotFound):
        await stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(user_id=bob.id, key_id=key.api_key.id))
    with pytest.raises(NotFound):
        await stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(user_id=ada.id, key_id="key_unknown"))
    assert (await stub.ListApiKeys(auth_pb2.ListApiKeysRequest(user_id=bob.id))).api_keys == []
    # Bob's failed attempt did not revoke Ada's key.
    assert (await stub.Authenticate(auth_pb2.AuthenticateRequest(credential=key.key))).user_id == ada.id


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
async def test_key_names_are_validated(stub: Stub, name: str) -> None:
    user = await new_user(stub)
    with pytest.raises(InvalidRequest) as exc:
        await stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(user_id=user.id, name=name))
    assert exc.value.param == "name"


async def test_keys_need_an_existing_user(stub: Stub) -> None:
    with pytest.raises(NotFound):
        await stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(user_id="user_missing", name="x"))
