"""The foundation's golden path over HTTP against the real platform (launcher, nats-server, auth,
gateway): sign-up, password and e-mail-code sign-in, API keys, bad input, and one trace per
sign-in across the gateway and auth, exported over OTLP to a real receiver."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from suanli_common.otlp_receiver import OtlpReceiver

if TYPE_CHECKING:
    from conftest import Platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def platform_env(otlp: OtlpReceiver) -> dict[str, str]:
    return otlp.exporter_env()


@pytest.fixture
def api(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.base_url, timeout=10) as client:
        yield client


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def sign_up_and_login(api: httpx.Client, email: str, password: str = "correct-horse-1") -> str:
    created = api.post("/api/v1/auth/signup", json={"email": email, "password": password})
    assert created.status_code == 201, created.text
    login = api.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    body = login.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    return str(body["access_token"])


def read_code(home: Path, email: str, timeout: float = 10) -> str:
    """The newest sign-in code mailed to `email`, from the embedded outbox."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mail in sorted((home / "outbox").glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True):
            text = mail.read_text()
            if email in text:
                match = re.search(r"\b(\d{6})\b", text)
                assert match, text
                return match.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no mail for {email} in {home / 'outbox'}")


def test_sign_up_sign_in_and_api_key_round_trip(api: httpx.Client) -> None:
    email = new_email()
    token = sign_up_and_login(api, email)
    me = api.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["email"] == email

    created = api.post(
        "/api/v1/api-keys", json={"name": "laptop"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("sk-")
    by_key = api.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {key}"})
    assert by_key.status_code == 200 and by_key.json()["email"] == email

    listed = api.get("/api/v1/api-keys", headers={"Authorization": f"Bearer {key}"}).json()["data"]
    assert [k["name"] for k in listed] == ["laptop"]
    assert key not in str(listed), "a listed key must never carry its secret"

    revoked = api.delete(
        f"/api/v1/api-keys/{created.json()['id']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert revoked.status_code == 200
    after = api.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {key}"})
    assert after.status_code == 401 and after.json()["error"]["type"] == "authentication_error"


def test_email_code_sign_in(api: httpx.Client, platform: Platform) -> None:
    email = new_email()
    sent = api.post("/api/v1/auth/email-code", json={"email": email})
    assert sent.status_code == 202, sent.text
    code = read_code(platform.home, email)
    login = api.post("/api/v1/auth/login", json={"email": email, "code": code})
    assert login.status_code == 200, login.text
    reused = api.post("/api/v1/auth/login", json={"email": email, "code": code})
    assert reused.status_code == 401 and reused.json()["error"]["code"] == "code_used"


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/api/v1/auth/signup", {"email": "not-an-email", "password": "long-enough-1"}, 400, "email"),
        ("/api/v1/auth/signup", {"email": "short@example.com", "password": "short"}, 400, "password"),
        (
            "/api/v1/auth/signup",
            {"email": "x@example.com", "password": "long-enough-1", "admin": True},
            400,
            "admin",
        ),
        ("/api/v1/auth/login", {"email": "nobody@example.com", "password": "whatever-1"}, 401, None),
    ],
)
def test_bad_input_gets_an_openai_error(
    api: httpx.Client, path: str, body: dict[str, object], status: int, param: str | None
) -> None:
    response = api.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"]
    if param:
        assert error["param"] == param


def test_duplicate_account_and_malformed_json(api: httpx.Client) -> None:
    email = new_email()
    sign_up_and_login(api, email)
    again = api.post("/api/v1/auth/signup", json={"email": email, "password": "another-pass-1"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "email_taken"
    broken = api.post(
        "/api/v1/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"


def test_one_sign_in_is_one_trace_across_gateway_and_auth(api: httpx.Client, otlp: OtlpReceiver) -> None:
    email = new_email()
    api.post("/api/v1/auth/signup", json={"email": email, "password": "trace-me-please"})
    login = api.post("/api/v1/auth/login", json={"email": email, "password": "trace-me-please"})
    assert login.status_code == 200

    def is_login_request(span: object) -> bool:
        return (
            getattr(span, "service", "") == "suanli-gateway"
            and "/api/v1/auth/login" in str(getattr(span, "name", ""))
            and not getattr(span, "parent_span_id", "")
        )

    spans = otlp.wait_for_trace(is_login_request, {"suanli-gateway", "suanli-auth"})
    auth_spans = [s for s in spans if s.service == "suanli-auth"]
    assert any("Login" in s.name for s in auth_spans), [s.name for s in spans]
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if not s.parent_span_id or s.parent_span_id not in ids]
    assert len(roots) == 1, f"the trace is not connected: {[(s.service, s.name) for s in roots]}"
