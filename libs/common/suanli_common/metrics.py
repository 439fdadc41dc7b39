"""Prometheus metrics every service shares: the gRPC server's request counter and latency histogram
(a server interceptor), the bus's publish and consume counts (FastStream's Prometheus middleware),
and the `/metrics` endpoint of a process that has no HTTP port of its own.

Each process keeps its metrics in a `CollectorRegistry` of its own, made in its `main.py` and handed
to what records into it (`make_server`, `make_broker`, the service's collectors); nothing here
registers into prometheus_client's global default registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import uvicorn
from faststream.nats.prometheus.provider import (
    BatchNatsMetricsSettingsProvider,
    NatsMetricsSettingsProvider,
)
from faststream.prometheus import ConsumeAttrs, PrometheusMiddleware
from faststream.response import PublishCommand
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app

from suanli_common.logging import get_logger

log = get_logger(__name__)

METRICS_PATH = "/metrics"
# How long a scrape waits for the collectors' refreshes (a database count) before it serves what
# the last refresh found.
REFRESH_TIMEOUT_S = 5.0

Refresh = Callable[[], Awaitable[None]]

# ASGI's shapes, spelled out to keep starlette out of every service's dependencies.
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class GrpcServerMetrics:
    requests: Counter
    duration: Histogram

    @classmethod
    def register(cls, registry: CollectorRegistry) -> GrpcServerMetrics:
        return cls(
            requests=Counter(
                "suanli_grpc_server_requests_total",
                "gRPC calls handled, by full method name and status code",
                ["method", "code"],
                registry=registry,
            ),
            duration=Histogram(
                "suanli_grpc_server_request_duration_seconds",
                "Time from a gRPC call's arrival to its last response message, by method",
                ["method"],
                registry=registry,
            ),
        )

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.requests.labels(method=method, code=code.name).inc()
        self.duration.labels(method=method).observe(seconds)


def status_of(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status the call ended with. `context.code()` is set by an abort or `set_code` and
    stays None on success; an exception that is not an abort is what grpc reports as UNKNOWN."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError | GeneratorExit):  # the client left, or its deadline passed
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def subject_label(subject: str) -> str:
    """A NATS subject as a metric label. Event subjects stay whole (one per event type, a fixed
    set); the others end in ids (`logs.job.<job>.<node>`, `work.node.<node>`, an inbox) and keep
    their first two tokens, so a label never takes a new value per job."""
    if subject.startswith("events."):
        return subject
    if subject.startswith("_INBOX."):
        return "_INBOX"
    return ".".join(subject.split(".", 2)[:2])


class _SubjectFamilies(NatsMetricsSettingsProvider):
    def get_publish_destination_name_from_cmd(self, cmd: PublishCommand) -> str:
        return subject_label(super().get_publish_destination_name_from_cmd(cmd))

    def get_consume_attrs_from_message(self, msg: Any) -> ConsumeAttrs:
        attrs = super().get_consume_attrs_from_message(msg)
        return {**attrs, "destination_name": subject_label(attrs["destination_name"])}


class _BatchSubjectFamilies(BatchNatsMetricsSettingsProvider):
    def get_publish_destination_name_from_cmd(self, cmd: PublishCommand) -> str:
        return subject_label(super().get_publish_destination_name_from_cmd(cmd))

    def get_consume_attrs_from_message(self, msg: Any) -> ConsumeAttrs:
        attrs = super().get_consume_attrs_from_message(msg)
        return {**attrs, "destination_name": subject_label(attrs["destination_name"])}


def _settings_for(
    message: Msg | Sequence[Msg] | None,
) -> NatsMetricsSettingsProvider | BatchNatsMetricsSettingsProvider | None:
    # As FastStream's own NATS factory (faststream.nats.prometheus.provider), with bounded subjects.
    if isinstance(message, Sequence):
        return _BatchSubjectFamilies()
    if isinstance(message, Msg) or message is None:
        return _SubjectFamilies()
    return None  # key-value and object store watches: not counted


def nats_metrics_middleware(registry: CollectorRegistry, service: str) -> PrometheusMiddleware[Any, Any]:
    """FastStream's Prometheus middleware for NATS (`faststream_*` metrics, `app_name` suanli-<service>),
    its subject labels bounded by `subject_label`."""
    return PrometheusMiddleware(
        settings_provider_factory=_settings_for, registry=registry, app_name=f"suanli-{service}"
    )


def metrics_app(registry: CollectorRegistry, refresh: Sequence[Refresh] = ()) -> ASGIApp:
    """An ASGI app serving the registry at /metrics. It runs on the service's event loop, so the
    collectors read the service's in-memory state from the thread that owns it; the `refresh`
    callbacks run before each scrape (counts that need a database query)."""
    exposition = make_asgi_app(registry)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != METRICS_PATH:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"only /metrics here\n"})
            return
        for callback in refresh:
            try:
                async with asyncio.timeout(REFRESH_TIMEOUT_S):
                    await callback()
            except Exception:
                log.warning("a metrics refresh failed; serving its last values", exc_info=True)
        await exposition(scope, receive, send)

    return app


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: `run_service` owns SIGTERM/SIGINT and cancels us."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address[:2], family=family)


@contextlib.asynccontextmanager
async def serving_metrics(
    registry: CollectorRegistry,
    host: str,
    port: int,
    *,
    setting: str,
    refresh: Sequence[Refresh] = (),
) -> AsyncIterator[int | None]:
    """Serves `registry` at http://host:port/metrics until the block ends; yields the port, or None
    when nothing is served. Port 0 turns the endpoint off. A port already taken is logged (naming
    `setting`, the variable to change) and the service runs on without metrics: metrics are not
    worth failing a service for, and `suanli up` checks its ports before it starts anything."""
    if port == 0:
        log.info("metrics endpoint off", setting=setting)
        yield None
        return
    try:
        listener = _listen(host, port)
    except OSError as exc:
        log.error(
            "cannot serve metrics; set another port",
            address=f"{host}:{port}",
            setting=setting,
            error=str(exc),
        )
        yield None
        return
    config = uvicorn.Config(
        metrics_app(registry, refresh),
        log_config=None,
        # Its start and stop lines would read as if the process were an HTTP server; errors still show.
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        server_header=False,
        timeout_graceful_shutdown=2,
    )
    server = _EmbeddedServer(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]), name="metrics-endpoint")
    log.info("metrics serving", url=f"http://{host}:{port}{METRICS_PATH}")
    try:
        yield port
    finally:
        server.should_exit = True
        try:
            await serving
        except Exception:
            log.warning("the metrics endpoint failed", exc_info=True)
        finally:
            listener.close()
