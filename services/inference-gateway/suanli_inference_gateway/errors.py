"""The one place where every failure becomes an OpenAI error object
`{"error": {"message", "type", "param", "code"}}` with its HTTP status, on /v1 and /api/v1 alike."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suanli_common.errors import SuanliError, Unauthenticated
from suanli_common.logging import get_logger

log = get_logger(__name__)


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def suanli_error_response(exc: SuanliError) -> JSONResponse:
    headers: dict[str, str] = {}
    if exc.retry_after is not None or exc.http_status == 429:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after or 1)))
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(exc.to_openai(), status_code=exc.http_status, headers=headers)


async def _on_suanli_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SuanliError)
    return suanli_error_response(exc)


def _param_of(loc: Sequence[Any]) -> str | None:
    # loc is ("body", "email") / ("query", "limit") / ("path", "id"); the first item is where.
    parts = [str(p) for p in loc[1:]]
    return ".".join(parts) or None


def describe_validation_error(errors: Sequence[Any]) -> tuple[str, str | None, str]:
    """(message, param, code) of the first problem, in OpenAI's phrasing."""
    if not errors:
        return "Invalid request.", None, "invalid_request"
    first = errors[0]
    kind = first.get("type", "")
    loc = tuple(first.get("loc", ()))
    param = _param_of(loc)
    if kind == "json_invalid":
        return (
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
            "using your HTTP library correctly. The API expects a JSON payload.)",
            None,
            "invalid_json",
        )
    if kind == "missing" and param is None:
        return "The request body is missing: the API expects a JSON object.", None, "invalid_json"
    if kind in ("model_attributes_type", "model_type") and param is None:
        return "The request body must be a JSON object.", None, "invalid_json"
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param, "unknown_parameter"
    if kind == "missing":
        return f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    message = str(first.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    if param is None:
        return f"Invalid request: {message}.", None, "invalid_request"
    return f"Invalid value for '{param}': {message}.", param, "invalid_value"


def validation_error_response(errors: Sequence[Any]) -> JSONResponse:
    message, param, code = describe_validation_error(errors)
    return JSONResponse(error_body(message, "invalid_request_error", param, code), status_code=400)


def server_error_response() -> JSONResponse:
    return JSONResponse(
        error_body("The server had an error while processing your request.", "server_error"), status_code=500
    )


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_error_response(exc.errors())


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 404 and exc.detail == "Not Found":
        message, code = f"Invalid URL ({request.method} {request.url.path})", "not_found"
    elif status == 405:
        message, code = f"Method {request.method} is not allowed on {request.url.path}", "method_not_allowed"
    else:
        message, code = str(exc.detail), None
    error_type = "server_error" if status >= 500 else "invalid_request_error"
    return JSONResponse(error_body(message, error_type, None, code), status_code=status, headers=exc.headers)


class UnhandledErrorMiddleware:
    """Turns an exception no handler knows into a 500 server_error object (logged with its trace,
    never shown). A pure ASGI middleware rather than an `Exception` handler, because Starlette
    re-raises after running that one, which would log the error twice."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error", method=scope.get("method"), path=scope.get("path"))
            if started:  # too late for an error object; the client sees a cut response
                raise
            await server_error_response()(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SuanliError, _on_suanli_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_middleware(UnhandledErrorMiddleware)
