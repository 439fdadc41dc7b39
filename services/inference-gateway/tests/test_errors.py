"""Every failure is an OpenAI error object with the right status, on /v1 and /api/v1 alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Gateway


def assert_error_shape(body: dict[str, Any]) -> dict[str, Any]:
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.mark.parametrize("path", ["/v1/nothing-here", "/api/v1/nothing-here"])
async def test_unknown_route_is_404_error_object(gateway: Gateway, path: str) -> None:
    response = await gateway.http.get(path)
    assert response.status_code == 404
    error = assert_error_shape(response.json())
    assert error["type"] == "invalid_request_error" and path in error["message"]


async def test_wrong_method_is_405_error_object(gateway: Gateway) -> None:
    response = await gateway.http.put("/api/v1/auth/login", json={})
    assert response.status_code == 405
    assert assert_error_shape(response.json())["code"] == "method_not_allowed"
    assert "POST" in response.headers["allow"]


async def test_malformed_json_is_400_invalid_json(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/api/v1/auth/signup",
        content=b'{"email": "a@example.com",',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = assert_error_shape(response.json())
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json"


async def test_missing_body_is_400(gateway: Gateway) -> None:
    response = await gateway.http.post("/api/v1/auth/signup")
    assert response.status_code == 400
    assert assert_error_shape(response.json())["code"] == "invalid_json"


async def test_unknown_field_is_400_naming_it(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/api/v1/auth/signup", json={"email": "a@example.com", "password": "long enough", "admin": True}
    )
    assert response.status_code == 400
    error = assert_error_shape(response.json())
    assert error["param"] == "admin" and error["code"] == "unknown_parameter"
    assert "admin" in error["message"]


async def test_missing_and_invalid_fields_name_the_param(gateway: Gateway) -> None:
    response = await gateway.http.post("/api/v1/auth/signup", json={"email": "a@example.com"})
    assert response.status_code == 400
    error = assert_error_shape(response.json())
    assert error["param"] == "password" and error["code"] == "missing_required_parameter"

    response = await gateway.http.post(
        "/api/v1/auth/signup", json={"email": "not-an-address", "password": "x" * 9}
    )
    assert response.status_code == 400
    assert assert_error_shape(response.json())["param"] == "email"


async def test_login_needs_exactly_one_secret(gateway: Gateway) -> None:
    for body in (
        {"email": "a@example.com"},
        {"email": "a@example.com", "password": "pw", "code": "123456"},
    ):
        response = await gateway.http.post("/api/v1/auth/login", json=body)
        assert response.status_code == 400
        assert "exactly one" in assert_error_shape(response.json())["message"]


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwdw==", "Bearer", "Bearer   "])
async def test_missing_credentials_is_401(gateway: Gateway, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await gateway.http.get("/api/v1/auth/me", headers=headers)
    assert response.status_code == 401
    error = assert_error_shape(response.json())
    assert error["type"] == "authentication_error" and error["code"] == "missing_credentials"
    assert error["message"].startswith("You didn't provide an API key")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_domain_error_from_auth_keeps_its_class_code_and_param(gateway: Gateway) -> None:
    body = {"email": "dup@example.com", "password": "long enough"}
    assert (await gateway.http.post("/api/v1/auth/signup", json=body)).status_code == 201
    response = await gateway.http.post("/api/v1/auth/signup", json=body)
    assert response.status_code == 409
    error = assert_error_shape(response.json())
    assert error["code"] == "email_taken" and error["param"] == "email"

    response = await gateway.http.post(
        "/api/v1/auth/signup", json={"email": "b@example.com", "password": "short"}
    )
    assert response.status_code == 400
    assert assert_error_shape(response.json())["code"] == "weak_password"


async def test_auth_down_is_503_error_object(gateway: Gateway) -> None:
    await gateway.auth.stop()
    response = await gateway.http.post(
        "/api/v1/auth/login", json={"email": "a@example.com", "password": "pw"}
    )
    assert response.status_code == 503
    assert assert_error_shape(response.json())["type"] == "service_unavailable_error"


async def test_unexpected_exception_is_500_without_a_trace(gateway: Gateway) -> None:
    app = gateway.http._transport.app  # type: ignore[attr-defined]

    @app.get("/api/v1/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    response = await gateway.http.get("/api/v1/boom")
    assert response.status_code == 500
    error = assert_error_shape(response.json())
    assert error["type"] == "server_error" and "secret" not in response.text
