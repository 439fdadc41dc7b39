"""Wires the gateway process: bus, gRPC channels, the app, and uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator

import grpc
import httpx
import uvicorn
from faststream.nats import NatsBroker
from prometheus_client import CollectorRegistry

from suanli_common.bus import Event, declare_streams, make_broker, subscribe_events
from suanli_common.grpc import check_health, make_channel
from suanli_common.logging import get_logger
from suanli_common.process import run_service
from suanli_common.proto.suanli.v1 import auth_pb2_grpc, catalog_pb2_grpc, rag_pb2_grpc, scheduler_pb2_grpc
from suanli_common.proto.suanli.v1.events_pb2 import DeploymentChanged
from suanli_inference_gateway.app import create_app
from suanli_inference_gateway.authentication.authenticator import Authenticator
from suanli_inference_gateway.authentication.key_cache import ApiKeyCache
from suanli_inference_gateway.authentication.revocations import subscribe_key_revocations
from suanli_inference_gateway.clients.auth import AUTH_SERVICE, IDEMPOTENT_METHODS, AuthClient
from suanli_inference_gateway.clients.catalog import CATALOG_SERVICE, CatalogClient
from suanli_inference_gateway.clients.catalog import IDEMPOTENT_METHODS as CATALOG_IDEMPOTENT_METHODS
from suanli_inference_gateway.clients.deployments import IDEMPOTENT_METHODS as DEPLOYMENT_IDEMPOTENT_METHODS
from suanli_inference_gateway.clients.deployments import DeploymentsClient, deployment_of
from suanli_inference_gateway.clients.instances import IDEMPOTENT_METHODS as INSTANCE_IDEMPOTENT_METHODS
from suanli_inference_gateway.clients.instances import InstancesClient
from suanli_inference_gateway.clients.job_logs import JetStreamJobLogs
from suanli_inference_gateway.clients.job_metrics import JetStreamJobMetrics
from suanli_inference_gateway.clients.rag import IDEMPOTENT_METHODS as RAG_IDEMPOTENT_METHODS
from suanli_inference_gateway.clients.rag import RAG_SERVICE, RagClient
from suanli_inference_gateway.clients.scheduler import IDEMPOTENT_METHODS as SCHEDULER_IDEMPOTENT_METHODS
from suanli_inference_gateway.clients.scheduler import SCHEDULER_SERVICE, SchedulerClient
from suanli_inference_gateway.dependencies import GatewayDeps, ReadyCheck
from suanli_inference_gateway.health import model_ready_check
from suanli_inference_gateway.metrics import TokenMetrics
from suanli_inference_gateway.openai.inference.limits import InferenceLimits
from suanli_inference_gateway.openai.inference.quota import TokenQuotaGate
from suanli_inference_gateway.openai.inference.replica_client import ReplicaPool
from suanli_inference_gateway.openai.inference.routing import RoutingTable, keep_in_sync
from suanli_inference_gateway.openai.inference.service import Inference
from suanli_inference_gateway.openai.inference.upstream import Upstream
from suanli_inference_gateway.openai.inference.usage import EventUsageSink
from suanli_inference_gateway.platform.instances.proxy import InstanceProxy
from suanli_inference_gateway.ratelimit import SignInLimiter
from suanli_inference_gateway.settings import GatewaySettings

log = get_logger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `run_service` owns SIGTERM/SIGINT and cancels us."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _nats_check(broker: NatsBroker, timeout: float) -> ReadyCheck:
    async def check() -> bool:
        return await broker.ping(timeout=timeout)

    return check


def _grpc_check(channel: grpc.aio.Channel, timeout: float) -> ReadyCheck:
    async def check() -> bool:
        return await check_health(channel, timeout=timeout)

    return check


async def serve(settings: GatewaySettings) -> None:
    metrics = CollectorRegistry()
    broker = make_broker(settings.nats_url, service="gateway", metrics=metrics)
    key_cache = ApiKeyCache(
        settings.key_cache_ttl_s,
        negative_ttl_s=settings.key_cache_negative_ttl_s,
        max_entries=settings.key_cache_max_entries,
    )
    subscribe_key_revocations(broker, key_cache)
    auth_channel = make_channel(
        settings.auth_address,
        timeout=settings.grpc_timeout_s,
        service=AUTH_SERVICE,
        idempotent_methods=IDEMPOTENT_METHODS,
    )
    catalog_channel = make_channel(
        settings.catalog_address,
        timeout=settings.grpc_timeout_s,
        service=CATALOG_SERVICE,
        idempotent_methods=CATALOG_IDEMPOTENT_METHODS,
    )
    channels = {"auth": auth_channel, "catalog": catalog_channel}
    channels["scheduler"] = scheduler_channel = make_channel(
        settings.scheduler_address,
        timeout=settings.grpc_timeout_s,
        service=SCHEDULER_SERVICE,
        idempotent_methods=(
            SCHEDULER_IDEMPOTENT_METHODS + DEPLOYMENT_IDEMPOTENT_METHODS + INSTANCE_IDEMPOTENT_METHODS
        ),
    )
    channels["rag"] = rag_channel = make_channel(
        settings.rag_address,
        timeout=settings.grpc_timeout_s,
        service=RAG_SERVICE,
        idempotent_methods=RAG_IDEMPOTENT_METHODS,
    )
    for name in settings.ready_services:
        if name not in channels:
            channels[name] = make_channel(settings.service_address(name), timeout=settings.grpc_timeout_s)
    auth = AuthClient(auth_pb2_grpc.AuthServiceStub(auth_channel))
    catalog = CatalogClient(catalog_pb2_grpc.CatalogServiceStub(catalog_channel))
    checks: dict[str, ReadyCheck] = {"nats": _nats_check(broker, settings.ready_timeout_s)}
    for name in settings.ready_services:
        checks[name] = _grpc_check(channels[name], settings.ready_timeout_s)
    if settings.seed_models and "catalog" in settings.ready_services:
        checks["seed_model"] = model_ready_check(catalog, settings.seed_model_id)
    deployments = DeploymentsClient(scheduler_pb2_grpc.SchedulerServiceStub(scheduler_channel))
    routes = RoutingTable()

    async def on_deployment_changed(event: Event[DeploymentChanged]) -> None:
        routes.apply(deployment_of(event.data.deployment))

    subscribe_events(broker, "deployment.*", DeploymentChanged, on_deployment_changed)
    replicas = ReplicaPool(
        max_connections=settings.inference_max_connections,
        keepalive_s=settings.inference_keepalive_s,
        connect_timeout_s=5.0,
        read_timeout_s=settings.inference_timeout_s,
    )
    # Instances' servers are on nodes' own interfaces: no proxy from the environment applies.
    instance_client = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.instance_proxy_timeout_s, connect=5.0), trust_env=False
    )
    authenticator = Authenticator(auth, key_cache)
    usage = EventUsageSink(broker, TokenMetrics.register(metrics))
    instances = InstancesClient(scheduler_pb2_grpc.SchedulerServiceStub(scheduler_channel))
    deps = GatewayDeps(
        auth=auth,
        authenticator=authenticator,
        signin_limiter=SignInLimiter.per_minute(
            settings.signin_limit_per_ip, settings.signin_limit_per_account, settings.signin_window_s
        ),
        catalog=catalog,
        ready_checks=checks,
        scheduler=SchedulerClient(scheduler_pb2_grpc.SchedulerServiceStub(scheduler_channel)),
        # Resolved on use: the broker connects after the app is built.
        job_logs=JetStreamJobLogs(lambda: broker.config.connection_state.stream),
        job_metrics=JetStreamJobMetrics(lambda: broker.config.connection_state.stream),
        deployments=deployments,
        inference=Inference(
            routes=routes,
            upstream=Upstream(replicas),
            limits=InferenceLimits(
                settings.inference_requests_per_minute, settings.inference_tokens_per_minute
            ),
            usage=usage,
            quota=TokenQuotaGate(
                auth, settings.quota_cache_s, lookup_timeout_s=settings.quota_lookup_timeout_s
            ),
        ),
        rag=RagClient(rag_pb2_grpc.RagServiceStub(rag_channel)),
        instances=instances,
        instance_proxy=InstanceProxy(instances, authenticator, instance_client),
    )
    server = _Server(
        uvicorn.Config(
            create_app(settings, deps, metrics),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            proxy_headers=True,
            forwarded_allow_ips=settings.forwarded_allow_ips,
            http="httptools",
        )
    )
    try:
        await broker.connect()
        await declare_streams(broker, settings.nats_stream_replicas)
        await broker.start()
        usage.start()
        syncing = asyncio.ensure_future(keep_in_sync(routes, deployments, settings.routing_resync_s))
        serving = asyncio.ensure_future(server.serve())
        try:
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            # Graceful: stop accepting, let requests in flight finish, then close.
            server.should_exit = True
            await serving
            raise
        if server.started is False:
            raise RuntimeError(f"cannot serve HTTP on {settings.http_host}:{settings.http_port}")
    finally:
        if "syncing" in locals():
            syncing.cancel()
        await replicas.aclose()
        await instance_client.aclose()
        await usage.aclose()  # the requests served are all in: what they used goes out before the bus closes
        await broker.stop()
        for channel in channels.values():
            await channel.close()


def main() -> None:
    settings = GatewaySettings()
    # Not uvloop, though it would take some of the loop's own work per request into C: under it
    # the trace of a document added to a knowledge base lost a span (tests/integration/test_traces.py).
    run_service(settings, lambda: serve(settings))


if __name__ == "__main__":
    main()
