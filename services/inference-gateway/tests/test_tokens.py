"""Access tokens are verified in the gateway with auth's public keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jwt

if TYPE_CHECKING:
    from conftest import Gateway


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_rotated_signing_key_is_fetched_once(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    assert (await gateway.http.get("/api/v1/auth/me", headers=_bearer(token))).status_code == 200
    gateway.auth.servicer.rotate_signing_key()
    user = gateway.auth.servicer.users["ada@example.com"]
    fresh = gateway.auth.servicer.issue_token(user)
    for _ in range(3):
        assert (await gateway.http.get("/api/v1/auth/me", headers=_bearer(fresh))).status_code == 200
    assert gateway.auth.servicer.calls["GetSigningKeys"] == 2
    assert gateway.auth.servicer.calls["Authenticate"] == 0


async def test_expired_token_is_401(gateway: Gateway) -> None:
    await gateway.sign_in()
    user = gateway.auth.servicer.users["ada@example.com"]
    expired = gateway.auth.servicer.issue_token(user, ttl_s=-120)
    response = await gateway.http.get("/api/v1/auth/me", headers=_bearer(expired))
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_expired"


async def test_forged_and_garbled_tokens_are_401(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    for bad in (forged, "not.a.jwt"):
        response = await gateway.http.get("/api/v1/auth/me", headers=_bearer(bad))
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_token"


async def test_unknown_kids_do_not_hammer_auth(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    assert (await gateway.http.get("/api/v1/auth/me", headers=_bearer(token))).status_code == 200
    servicer = gateway.auth.servicer
    made_up = jwt.encode(
        jwt.decode(token, options={"verify_signature": False}),
        servicer.signing_keys[servicer.current_kid],
        algorithm="EdDSA",
        headers={"kid": "kid_made_up"},
    )
    for _ in range(5):
        response = await gateway.http.get("/api/v1/auth/me", headers=_bearer(made_up))
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_token"
    assert servicer.calls["GetSigningKeys"] == 2, "one refetch for the unknown kid, then none"
