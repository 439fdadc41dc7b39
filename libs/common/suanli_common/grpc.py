"""gRPC server and client helpers: deadlines, retries for idempotent calls, tracing, and the
mapping of domain errors to gRPC statuses and back.

A service raises `SuanliError`s; the server interceptor turns them into a status with the error's
class, code and param in trailing metadata, and the client interceptor raises the same class
on the caller's side, so the gateway renders the error the owning service meant.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from prometheus_client import CollectorRegistry

from suanli_common.errors import SuanliError, error_class_for_grpc, error_class_named
from suanli_common.logging import get_logger
from suanli_common.metrics import GrpcServerMetrics, status_of

log = get_logger(__name__)

_META_TYPE = "suanli-error-class"
_META_CODE = "suanli-error-code"
_META_PARAM = "suanli-error-param"
_META_RETRY = "suanli-retry-after"


async def _abort_with(context: grpc.aio.ServicerContext, exc: SuanliError) -> None:
    meta = [(_META_TYPE, type(exc).__name__)]
    if exc.code:
        meta.append((_META_CODE, exc.code))
    if exc.param:
        meta.append((_META_PARAM, exc.param))
    if exc.retry_after is not None:
        meta.append((_META_RETRY, str(exc.retry_after)))
    await context.abort(exc.grpc_code, exc.message, trailing_metadata=tuple(meta))


Around = Callable[[grpc.aio.ServicerContext], contextlib.AbstractAsyncContextManager[None]]


def wrap_handler(handler: grpc.RpcMethodHandler, around: Around) -> grpc.RpcMethodHandler:
    """The same method handler with each call run inside `around(context)`: unary calls,
    client-streaming uploads, server-streaming downloads and bidirectional streams alike."""
    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        unary = handler.unary_unary

        async def unary_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with around(context):
                return await unary(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_behavior, **codec)
    if handler.stream_unary is not None:
        upload = handler.stream_unary

        async def upload_behavior(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            async with around(context):
                return await upload(requests, context)

        return grpc.stream_unary_rpc_method_handler(upload_behavior, **codec)
    if handler.unary_stream is not None:
        download = handler.unary_stream

        async def download_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with around(context):
                async for item in _responses(download(request, context)):
                    yield item

        return grpc.unary_stream_rpc_method_handler(download_behavior, **codec)
    if handler.stream_stream is not None:
        both = handler.stream_stream

        async def both_behavior(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            async with around(context):
                async for item in _responses(both(requests, context)):
                    yield item

        return grpc.stream_stream_rpc_method_handler(both_behavior, **codec)
    return handler


async def _responses(result: Any) -> AsyncIterator[Any]:
    """A streaming method's responses: it is an async generator, or a coroutine that sends them
    itself with `context.write` (grpc.aio allows both)."""
    if inspect.isawaitable(result):
        await result
        return
    async for item in result:
        yield item


class DomainErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Maps `SuanliError` to a gRPC status; any other exception is logged and becomes INTERNAL."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method

        @contextlib.asynccontextmanager
        async def mapped_errors(context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
            try:
                yield
            except SuanliError as exc:
                await _abort_with(context, exc)
            except grpc.aio.AbortError:
                raise
            except Exception:
                log.exception("unhandled error in gRPC method", method=method)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")

        return wrap_handler(handler, mapped_errors)


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts and times every call by method and final status code. The outermost interceptor,
    so it sees the status the domain-error mapping aborted with."""

    def __init__(self, metrics: GrpcServerMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED, with no label to grow
            return handler
        # "/suanli.v1.AuthService/Login" -> "suanli.v1.AuthService/Login"
        method = details.method.lstrip("/")
        metrics = self._metrics

        @contextlib.asynccontextmanager
        async def measured(context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                yield
            except BaseException as exc:
                error = exc
                raise
            finally:
                metrics.observe(method, status_of(context, error), time.perf_counter() - started)

        return wrap_handler(handler, measured)


def error_from_rpc(exc: grpc.aio.AioRpcError) -> SuanliError:
    meta = {k: v for k, v in (exc.trailing_metadata() or ())}
    cls = error_class_named(str(meta.get(_META_TYPE, ""))) or error_class_for_grpc(exc.code())
    retry = meta.get(_META_RETRY)
    message = exc.details() or exc.code().name.lower()
    if _META_TYPE not in meta and exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
        # Transport details (addresses, resolver errors) are for operators, not API clients.
        log.warning("gRPC call failed", code=exc.code().name, detail=exc.details())
        message = (
            "a platform service is unavailable; try again shortly"
            if exc.code() == grpc.StatusCode.UNAVAILABLE
            else "internal error"
        )
    return cls(
        message,
        code=str(meta[_META_CODE]) if _META_CODE in meta else None,
        param=str(meta[_META_PARAM]) if _META_PARAM in meta else None,
        retry_after=float(retry) if retry else None,
    )


class DomainErrorClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Gives every unary call a deadline and raises the server's domain error on the caller's side."""

    def __init__(self, default_timeout: float) -> None:
        self._timeout = default_timeout

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        if details.timeout is None:
            details = grpc.aio.ClientCallDetails(
                details.method,
                self._timeout,
                details.metadata,
                details.credentials,
                details.wait_for_ready,
            )
        call = await continuation(details, request)
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None


# A separate class: grpc.aio files an interceptor under the first call kind it implements only.
class UploadErrorClientInterceptor(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    """Raises the server's domain error for uploads (client streams). No default deadline: an
    upload's length depends on the data, so the caller sets one."""

    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, requests: Any
    ) -> Any:
        call = await continuation(details, requests)
        try:
            await call  # grpc.aio wants the call back, not the response, from this kind
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        return call


def retry_service_config(service: str, idempotent_methods: Iterable[str]) -> str:
    """A gRPC service config that retries the idempotent methods on UNAVAILABLE (a restarting
    peer), with exponential backoff; non-idempotent calls are never retried."""
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": service, "method": m} for m in idempotent_methods],
                    "retryPolicy": {
                        "maxAttempts": 5,
                        "initialBackoff": "0.05s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def make_channel(
    address: str,
    *,
    timeout: float = 5.0,
    service: str | None = None,
    idempotent_methods: Sequence[str] = (),
) -> grpc.aio.Channel:
    options: list[tuple[str, Any]] = [
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]
    if service and idempotent_methods:
        options += [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", retry_service_config(service, idempotent_methods)),
        ]
    return grpc.aio.insecure_channel(
        address,
        options=options,
        # Ours outermost, so the domain error is raised from the call tracing hands back.
        interceptors=[
            DomainErrorClientInterceptor(timeout),
            UploadErrorClientInterceptor(),
            *aio_client_interceptors(),
        ],
    )


def make_server(
    port: int, host: str = "127.0.0.1", *, metrics: CollectorRegistry | None = None
) -> tuple[grpc.aio.Server, health_aio.HealthServicer]:
    """A traced server with domain-error mapping and the standard health service (SERVING by
    default; a service may set NOT_SERVING while it cannot do its work); with a registry, every
    call is counted and timed in it."""
    interceptors: list[grpc.aio.ServerInterceptor] = [aio_server_interceptor(), DomainErrorInterceptor()]
    if metrics is not None:
        # Outermost: it sees the status code the domain errors were mapped to.
        interceptors.insert(0, MetricsInterceptor(GrpcServerMetrics.register(metrics)))
    server = grpc.aio.server(interceptors=interceptors)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise RuntimeError(f"cannot bind gRPC port {host}:{port}")
    return server, health_servicer


async def check_health(channel: grpc.aio.Channel, timeout: float = 1.0) -> bool:
    try:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout
        )
    except (grpc.aio.AioRpcError, SuanliError):
        return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
