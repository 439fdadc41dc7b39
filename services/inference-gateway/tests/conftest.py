"""Fixtures of the gateway's tests: the auth contract in-process over real gRPC, and the app."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import structlog

from suanli_common.grpc import check_health, make_channel
from suanli_common.proto.suanli.v1 import auth_pb2_grpc, catalog_pb2_grpc
from suanli_common.testing import free_port

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the sibling module importable

from auth_contract_double import RunningAuth, start_auth_double

from suanli_inference_gateway.app import create_app
from suanli_inference_gateway.authentication.authenticator import Authenticator
from suanli_inference_gateway.authentication.key_cache import ApiKeyCache
from suanli_inference_gateway.clients.auth import AUTH_SERVICE, IDEMPOTENT_METHODS, AuthClient
from suanli_inference_gateway.clients.catalog import CATALOG_SERVICE, CatalogClient
from suanli_inference_gateway.clients.catalog import IDEMPOTENT_METHODS as CATALOG_IDEMPOTENT_METHODS
from suanli_inference_gateway.dependencies import GatewayDeps
from suanli_inference_gateway.ratelimit import SignInLimiter
from suanli_inference_gateway.settings import GatewaySettings


@dataclass
class Gateway:
    http: httpx.AsyncClient
    auth: RunningAuth
    deps: GatewayDeps
    settings: GatewaySettings

    async def sign_in(self, email: str = "ada@example.com", password: str = "correct horse") -> str:
        await self.http.post("/api/v1/auth/signup", json={"email": email, "password": password})
        response = await self.http.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def new_api_key(self, token: str, name: str = "laptop") -> dict[str, str]:
        response = await self.http.post(
            "/api/v1/api-keys", json={"name": name}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 201, response.text
        body: dict[str, str] = response.json()
        return body


@pytest.fixture(autouse=True)
def default_logging() -> None:
    # Another package's tests may have run `configure_logging`, which binds the sys.stderr of
    # that moment (a pytest capture file, closed since) and caches loggers on first use.
    structlog.reset_defaults()


@pytest.fixture
async def auth_server() -> AsyncIterator[RunningAuth]:
    running = await start_auth_double()
    yield running
    await running.stop()


@pytest.fixture
def catalog_address() -> str:
    """Where the gateway's catalog client points: nowhere by default; a test module that needs the
    catalog overrides this fixture with one that starts the real service (test_catalog_routes.py)."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def settings(auth_server: RunningAuth, catalog_address: str, tmp_path: Path) -> GatewaySettings:
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<h1>console</h1>")
    return GatewaySettings(
        home=tmp_path / "var",
        auth_address=auth_server.address,
        catalog_address=catalog_address,
        web_dir=web,
        signin_limit_per_ip=20,
        signin_limit_per_account=10,
    )


@pytest.fixture
async def gateway(settings: GatewaySettings, auth_server: RunningAuth) -> AsyncIterator[Gateway]:
    channel = make_channel(
        settings.auth_address, timeout=2.0, service=AUTH_SERVICE, idempotent_methods=IDEMPOTENT_METHODS
    )
    auth = AuthClient(auth_pb2_grpc.AuthServiceStub(channel))
    catalog_channel = make_channel(
        settings.catalog_address,
        timeout=5.0,
        service=CATALOG_SERVICE,
        idempotent_methods=CATALOG_IDEMPOTENT_METHODS,
    )
    cache = ApiKeyCache(settings.key_cache_ttl_s, negative_ttl_s=settings.key_cache_negative_ttl_s)

    async def auth_ready() -> bool:
        return await check_health(channel, timeout=0.5)

    deps = GatewayDeps(
        auth=auth,
        authenticator=Authenticator(auth, cache),
        signin_limiter=SignInLimiter.per_minute(
            settings.signin_limit_per_ip, settings.signin_limit_per_account
        ),
        catalog=CatalogClient(catalog_pb2_grpc.CatalogServiceStub(catalog_channel)),
        ready_checks={"auth": auth_ready},
    )
    app = create_app(settings, deps)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield Gateway(http=http, auth=auth_server, deps=deps, settings=settings)
    await channel.close()
    await catalog_channel.close()
