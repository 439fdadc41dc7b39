"""Fixtures of the gateway's tests: the auth contract in-process over real gRPC, and the app; the
real catalog, scheduler and trainer agent for the modules that talk to them."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import structlog
from fastapi import FastAPI
from faststream.nats import NatsBroker

from suanli_catalog.main import RunningCatalog, running_catalog
from suanli_catalog.seed import TINY, build_once
from suanli_catalog.settings import CatalogSettings
from suanli_common.bus import declare_streams, make_broker
from suanli_common.grpc import check_health, make_channel
from suanli_common.proto.suanli.v1 import auth_pb2, auth_pb2_grpc, catalog_pb2_grpc, scheduler_pb2_grpc
from suanli_common.testing import NatsServer, free_port
from suanli_scheduler.main import SchedulerApp, start_scheduler
from suanli_scheduler.settings import SchedulerSettings
from suanli_trainer_agent.main import AgentApp, start_agent
from suanli_trainer_agent.settings import AgentSettings

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the sibling module importable

from auth_contract_double import RunningAuth, start_auth_double

from suanli_inference_gateway.app import create_app
from suanli_inference_gateway.authentication.authenticator import Authenticator
from suanli_inference_gateway.authentication.key_cache import ApiKeyCache
from suanli_inference_gateway.clients.auth import AUTH_SERVICE, IDEMPOTENT_METHODS, AuthClient
from suanli_inference_gateway.clients.catalog import CATALOG_SERVICE, CatalogClient
from suanli_inference_gateway.clients.catalog import IDEMPOTENT_METHODS as CATALOG_IDEMPOTENT_METHODS
from suanli_inference_gateway.clients.scheduler import IDEMPOTENT_METHODS as SCHEDULER_IDEMPOTENT_METHODS
from suanli_inference_gateway.clients.scheduler import SCHEDULER_SERVICE, SchedulerClient
from suanli_inference_gateway.dependencies import GatewayDeps
from suanli_inference_gateway.ratelimit import SignInLimiter
from suanli_inference_gateway.settings import GatewaySettings

# Shared with tests/integration: the seed models are built once per machine.
SEED_MODELS_CACHE = Path("/tmp/suanli-test-cache/seed-models")
NODE = "node-a"  # the trainer agent's node; its slots are "cpu:2"


@dataclass
class Gateway:
    http: httpx.AsyncClient
    auth: RunningAuth
    deps: GatewayDeps
    settings: GatewaySettings
    app: FastAPI  # to serve on a real port, where a test needs a real connection

    async def sign_in(self, email: str = "ada@example.com", password: str = "correct horse") -> str:
        await self.http.post("/api/v1/auth/signup", json={"email": email, "password": password})
        response = await self.http.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def sign_in_admin(self, email: str = "root@example.com") -> str:
        await self.sign_in(email)
        self.auth.servicer.users[email].role = auth_pb2.ROLE_ADMIN
        return await self.sign_in(email)  # a new token, with the admin role in it

    def user_id(self, email: str = "ada@example.com") -> str:
        return self.auth.servicer.user_id_of(email)

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
        yield Gateway(http=http, auth=auth_server, deps=deps, settings=settings, app=app)
    await channel.close()
    await catalog_channel.close()


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    return asyncio.run(build_once(TINY, SEED_MODELS_CACHE / TINY.folder_name))


@pytest.fixture
async def catalog(
    tmp_path: Path, nats_server: NatsServer, tiny_model_dir: Path
) -> AsyncIterator[RunningCatalog]:
    """The real catalog; a module points the gateway at it by overriding `catalog_address`."""
    settings = CatalogSettings(
        home=tmp_path / "catalog-home",
        nats_url=nats_server.url,
        catalog_grpc_port=free_port(),
        seed_models=True,
        models_dir=tiny_model_dir.parent,
    )
    async with running_catalog(settings, seeds=(TINY,)) as running:
        assert running.seeding is not None
        await running.seeding  # the tiny model is built already: this only registers it
        yield running


@pytest.fixture
async def scheduler(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[SchedulerApp]:
    settings = SchedulerSettings(
        home=tmp_path / "cluster",
        nats_url=nats_server.url,
        scheduler_grpc_port=free_port(),
        heartbeat_interval_s=0.2,
        missed_heartbeats=10,
        offer_grace_s=5.0,
        runtime_grace_s=5.0,
        runtime_minute_s=1.0,
    )
    app = await start_scheduler(settings)
    yield app
    await app.stop()


@pytest.fixture
async def agent(nats_server: NatsServer, tmp_path: Path, scheduler: SchedulerApp) -> AsyncIterator[AgentApp]:
    settings = AgentSettings(
        home=tmp_path / "cluster",
        nats_url=nats_server.url,
        node_id=NODE,
        agent_slots="cpu:2",
        heartbeat_interval_s=0.2,
        stop_grace_s=2.0,
        container_runtime="",
    )
    app = await start_agent(settings)
    yield app
    await app.stop()  # stops what still runs while the broker can still report it


@pytest.fixture
async def cluster(gateway: Gateway, scheduler: SchedulerApp, agent: AgentApp) -> AsyncIterator[Gateway]:
    """The gateway wired to the real scheduler, once the agent's slots ("cpu") are in the inventory."""
    channel = make_channel(
        f"127.0.0.1:{scheduler.port}",
        timeout=5.0,
        service=SCHEDULER_SERVICE,
        idempotent_methods=SCHEDULER_IDEMPOTENT_METHODS,
    )
    gateway.deps.scheduler = SchedulerClient(scheduler_pb2_grpc.SchedulerServiceStub(channel))
    for _ in range(100):
        if await gateway.deps.scheduler.list_gpus():
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the agent never showed up")
    yield gateway
    await channel.close()


@pytest.fixture
async def broker(nats_server: NatsServer) -> AsyncIterator[NatsBroker]:
    """The gateway's bus on the test's nats-server, its streams declared."""
    broker = make_broker(nats_server.url, service="gateway")
    await broker.connect()
    await declare_streams(broker)
    yield broker
    await broker.stop()
