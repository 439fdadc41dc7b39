"""The inference edge: POST /v1/chat/completions, /v1/completions and /v1/embeddings served as a
plain ASGI handler in front of FastAPI, because a streamed answer is the gateway's hot path.

Through FastAPI, every request ran routing, dependency injection and five middlewares, and every
streamed chunk went through four `send` wrappers (OpenTelemetry's, Prometheus', the error
middleware's, Starlette's) and a task group: ~5 ms of CPU per 16-token chat (issue 6). Here a
request does what those layers did for it, once: bearer authentication, the body checked against
the same protocol models (one `model_validate_json` on the raw bytes), the OpenAI error objects,
a server span with the caller's trace context, and the HTTP metrics; chunks go straight to `send`.
The FastAPI routes of the same paths stay declared: they describe these routes in the OpenAPI
document, and answer what is not a POST (405).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi.responses import Response
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel, ValidationError
from starlette.types import Receive, Scope, Send

from suanli_common.errors import SuanliError, Unavailable
from suanli_common.logging import get_logger
from suanli_inference_gateway.authentication.dependency import authenticate_bearer, bearer_credential
from suanli_inference_gateway.dependencies import GatewayDeps
from suanli_inference_gateway.errors import (
    server_error_response,
    suanli_error_response,
    validation_error_response,
)
from suanli_inference_gateway.metrics import HttpMetrics
from suanli_inference_gateway.openai.inference.forwarding import forward
from suanli_inference_gateway.openai.inference.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)

log = get_logger(__name__)
_tracer = trace.get_tracer("suanli.gateway.http")

InferenceRequest = ChatCompletionRequest | CompletionRequest | EmbeddingRequest

# path -> (endpoint name, request model); the paths are full, as FastAPI's routes name them.
ROUTES: dict[str, tuple[str, type[InferenceRequest]]] = {
    "/v1/chat/completions": ("chat.completions", ChatCompletionRequest),
    "/v1/completions": ("completions", CompletionRequest),
    "/v1/embeddings": ("embeddings", EmbeddingRequest),
}
_NOT_AN_OBJECT = [{"type": "model_attributes_type", "loc": ("body",)}]
_MISSING_BODY = [{"type": "missing", "loc": ("body",)}]


class ClientGone(Exception):
    """The client went away before its request's body was in."""


def handles(scope: Scope) -> bool:
    return scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in ROUTES


class InferenceEdge:
    """Serves the `ROUTES`; `deps()` gives the gateway's collaborators at request time (a test may
    swap its `inference`)."""

    def __init__(self, deps: Callable[[], GatewayDeps], metrics: HttpMetrics | None) -> None:
        self._deps = deps
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        path: str = scope["path"]
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        span = _tracer.start_span(
            f"POST {path}",
            context=propagate.extract(headers),
            kind=SpanKind.SERVER,
            attributes=_request_attributes(scope, headers, path),
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        status = 500
        try:
            try:
                response = await self._respond(scope, receive, headers, path, span)
            except ClientGone:
                status = 499
                return
            status = response.status_code
            await response(scope, receive, send)
        except Exception as exc:
            # After the response started (a replica that broke off mid-stream): the client sees a
            # cut response; the span and the metrics say what happened.
            span.record_exception(exc)
            log.warning("inference response cut", path=path, error=str(exc) or type(exc).__name__)
            raise
        finally:
            otel_context.detach(token)
            span.set_attribute("http.status_code", status)
            if status >= 500:
                span.set_status(StatusCode.ERROR)
            span.end()
            if self._metrics is not None:
                self._metrics.observe("POST", path, str(status), time.perf_counter() - started)

    async def _respond(
        self, scope: Scope, receive: Receive, headers: dict[str, str], path: str, span: trace.Span
    ) -> Response:
        endpoint, model = ROUTES[path]
        try:
            body = await _read_body(receive)
            # As FastAPI: a body that is not JSON is refused before the caller is authenticated;
            # every other problem of the body after.
            request, errors = _parse(model, body, headers.get("content-type"))
            if errors and errors[0].get("type") == "json_invalid":
                return validation_error_response(errors)
            deps = self._deps()
            principal = await authenticate_bearer(
                deps.authenticator, bearer_credential(headers.get("authorization"))
            )
            span.set_attribute("enduser.id", principal.user_id)
            if principal.key_id:
                span.set_attribute("suanli.api_key.id", principal.key_id)
            if deps.inference is None:
                raise Unavailable("inference is not available on this gateway")
            if request is None:
                return validation_error_response(errors)
            return await forward(deps.inference, principal, request, endpoint)
        except ClientGone:
            raise
        except SuanliError as exc:
            return suanli_error_response(exc)
        except Exception:
            log.exception("unhandled error", method="POST", path=path)
            return server_error_response()


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return True  # FastAPI reads a body without a content type as JSON too
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _parse(model: type[BaseModel], body: bytes, content_type: str | None) -> tuple[Any, list[dict[str, Any]]]:
    """(the request, []) or (None, the errors as FastAPI words them: locations under "body")."""
    if not body:
        return None, _MISSING_BODY
    if not _is_json(content_type):
        return None, _NOT_AN_OBJECT
    try:
        return model.model_validate_json(body), []
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        return None, [{**error, "loc": ("body", *error["loc"])} for error in errors]


def _request_attributes(scope: Scope, headers: dict[str, str], path: str) -> dict[str, str | int]:
    # The attributes OpenTelemetry's ASGI middleware gives the other routes' server spans.
    attributes: dict[str, str | int] = {
        "http.method": "POST",
        "http.route": path,
        "http.target": path,
        "http.scheme": scope.get("scheme", "http"),
        "http.flavor": scope.get("http_version", "1.1"),
    }
    client = scope.get("client")
    if client:
        attributes["net.peer.ip"] = client[0]
        attributes["net.peer.port"] = client[1]
    if agent := headers.get("user-agent"):
        attributes["http.user_agent"] = agent
    return attributes
