"""Health, readiness, the OpenAPI document and the console."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Gateway


async def test_healthz(gateway: Gateway) -> None:
    response = await gateway.http.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_follows_auth(gateway: Gateway) -> None:
    response = await gateway.http.get("/readyz")
    assert response.status_code == 200 and response.json()["checks"] == {"auth": "ok"}
    await gateway.auth.stop()
    response = await gateway.http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["down"] == ["auth"]


async def test_readyz_names_every_check_that_fails(gateway: Gateway) -> None:
    async def nats_down() -> bool:
        return False

    async def broken() -> bool:
        raise RuntimeError("boom")

    gateway.deps.ready_checks = {**gateway.deps.ready_checks, "nats": nats_down, "rag": broken}
    response = await gateway.http.get("/readyz")
    assert response.status_code == 503
    assert sorted(response.json()["down"]) == ["nats", "rag"]


async def test_openapi_lists_the_platform_paths(gateway: Gateway) -> None:
    response = await gateway.http.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    paths = document["paths"]
    for path in (
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
        "/api/v1/auth/email-code",
        "/api/v1/auth/me",
        "/api/v1/api-keys",
        "/api/v1/api-keys/{key_id}",
    ):
        assert path in paths
    assert "201" in paths["/api/v1/auth/signup"]["post"]["responses"]
    assert "bearer" in document["components"]["securitySchemes"]
    assert (await gateway.http.get("/api/v1/docs")).status_code == 200


async def test_console_is_served_at_the_root_and_api_wins(gateway: Gateway) -> None:
    response = await gateway.http.get("/")
    assert response.status_code == 200 and "console" in response.text
    response = await gateway.http.get("/no-such-file.js")
    assert response.status_code == 404 and "error" in response.json()
    response = await gateway.http.get("/api/v1")
    assert response.status_code == 404 and "error" in response.json()
