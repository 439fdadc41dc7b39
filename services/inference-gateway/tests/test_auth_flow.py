"""Sign-up, sign-in and API keys through the gateway, against the auth contract over gRPC."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Gateway


async def test_signup_returns_the_user(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/api/v1/auth/signup", json={"email": "Ada@Example.com", "password": "correct horse"}
    )
    assert response.status_code == 201
    user = response.json()
    assert user["id"].startswith("user_") and user["role"] == "user"
    assert user["email"].lower() == "ada@example.com"
    assert abs(user["created_at"] - time.time()) < 60
    assert "password" not in user


async def test_password_login_gives_a_token_verified_locally(gateway: Gateway) -> None:
    await gateway.http.post(
        "/api/v1/auth/signup", json={"email": "ada@example.com", "password": "correct horse"}
    )
    response = await gateway.http.post(
        "/api/v1/auth/login", json={"email": "ada@example.com", "password": "correct horse"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    for _ in range(3):
        me = await gateway.http.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert me.status_code == 200
        assert me.json()["email"] == "ada@example.com" and me.json()["key_id"] is None
    calls = gateway.auth.servicer.calls
    assert calls["Authenticate"] == 0, "an access token must be verified without calling auth"
    assert calls["GetSigningKeys"] == 1, "the signing keys are fetched once"


async def test_wrong_password_is_401_from_auth(gateway: Gateway) -> None:
    await gateway.http.post(
        "/api/v1/auth/signup", json={"email": "ada@example.com", "password": "correct horse"}
    )
    response = await gateway.http.post(
        "/api/v1/auth/login", json={"email": "ada@example.com", "password": "nope"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


async def test_email_code_login(gateway: Gateway) -> None:
    await gateway.http.post(
        "/api/v1/auth/signup", json={"email": "ada@example.com", "password": "correct horse"}
    )
    response = await gateway.http.post("/api/v1/auth/email-code", json={"email": "ada@example.com"})
    assert response.status_code == 202 and response.json() == {"expires_in": 600}
    code = gateway.auth.servicer.codes["ada@example.com"]
    response = await gateway.http.post("/api/v1/auth/login", json={"email": "ada@example.com", "code": code})
    assert response.status_code == 200 and response.json()["access_token"]


async def test_api_key_lifecycle(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    bearer = {"Authorization": f"Bearer {token}"}
    created = await gateway.new_api_key(token, "laptop")
    assert set(created) >= {"id", "name", "key", "prefix", "created_at"}
    assert created["key"].startswith("sk-") and created["key"].startswith(created["prefix"])

    listed = (await gateway.http.get("/api/v1/api-keys", headers=bearer)).json()
    assert listed["object"] == "list" and len(listed["data"]) == 1
    entry = listed["data"][0]
    assert "key" not in entry and entry["id"] == created["id"]
    assert entry["revoked_at"] is None and "last_used_at" in entry

    me = await gateway.http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {created['key']}"})
    assert me.status_code == 200 and me.json()["key_id"] == created["id"]

    revoked = await gateway.http.delete(f"/api/v1/api-keys/{created['id']}", headers=bearer)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    # Revoked through this gateway: its own cache forgets the key at once.
    me = await gateway.http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {created['key']}"})
    assert me.status_code == 401 and me.json()["error"]["code"] == "invalid_api_key"


async def test_revoking_someone_elses_key_is_404(gateway: Gateway) -> None:
    ada = await gateway.sign_in("ada@example.com")
    bob = await gateway.sign_in("bob@example.com")
    key = await gateway.new_api_key(ada)
    response = await gateway.http.delete(
        f"/api/v1/api-keys/{key['id']}", headers={"Authorization": f"Bearer {bob}"}
    )
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"
