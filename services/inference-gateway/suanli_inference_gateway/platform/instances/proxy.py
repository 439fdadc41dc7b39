"""/instances/{id}/...: each instance's server behind the gateway, HTTP and WebSocket alike, for
its owner only, so no port of a node is exposed.

The caller is who their Suanli credential says: `Authorization: Bearer` (an API key or an access
token), or, for a browser opening a page, the session cookie `POST /api/v1/instances/{id}/session`
sets. The credential stops here; the upstream gets the server's own token instead (Jupyter's),
which the user never needs. A cookie-authenticated request from another site is refused (the
cookie is SameSite=Strict as well): the cookie alone must not let a page elsewhere run code.

JupyterLab and TensorBoard serve under the instance's base URL themselves; Gradio (LLaMA-Factory)
serves at "/" and builds its links from its root path, so its requests lose the prefix here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import cast
from urllib.parse import urlsplit

import httpx
import websockets
from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.requests import HTTPConnection
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from suanli_common.errors import (
    FailedPrecondition,
    PermissionDenied,
    SuanliError,
    Unauthenticated,
    Unavailable,
)
from suanli_common.logging import get_logger
from suanli_inference_gateway.authentication.authenticator import Authenticator
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.clients.instances import (
    Instance,
    InstanceKind,
    InstancesApi,
    InstanceStatus,
)

log = get_logger(__name__)

SESSION_COOKIE = "suanli_session"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
# Headers of a WebSocket handshake the upstream connection makes itself.
WS_HANDSHAKE = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"}
)
NO_CREDENTIALS = (
    "Open an instance with your Suanli credentials: an Authorization: Bearer header, or the "
    "session cookie POST /api/v1/instances/{id}/session sets for a browser."
)


class InstanceProxy:
    """Finds the running server of a caller's instance (for a moment, without asking the scheduler
    again: a page of JupyterLab is a hundred requests) and the client requests go through."""

    def __init__(
        self,
        instances: InstancesApi,
        authenticator: Authenticator,
        client: httpx.AsyncClient,
        *,
        route_ttl_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.instances = instances
        self.client = client
        self._authenticator = authenticator
        self._ttl = route_ttl_s
        self._clock = clock
        self._routes: dict[tuple[str, str], tuple[float, Instance]] = {}

    async def authenticate(self, conn: HTTPConnection) -> Principal:
        scheme, _, credential = conn.headers.get("authorization", "").partition(" ")
        from_cookie = not (scheme.lower() == "bearer" and credential.strip())
        credential = conn.cookies.get(SESSION_COOKIE, "") if from_cookie else credential.strip()
        if not credential:
            raise Unauthenticated(NO_CREDENTIALS, code="missing_credentials")
        principal = await self._authenticator.authenticate(credential)
        if from_cookie and not _same_origin(conn):
            raise PermissionDenied("a request from another site may not open an instance", code="cross_site")
        return principal

    def forget(self, instance_id: str) -> None:
        """Drops what is known of an instance's server (it was stopped, or did not answer)."""
        self._routes = {k: v for k, v in self._routes.items() if k[1] != instance_id}

    async def running(self, principal: Principal, instance_id: str) -> Instance:
        """The caller's instance, running; NotFound for anyone else's."""
        key = (principal.user_id, instance_id)
        now = self._clock()
        cached = self._routes.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        instance = await self.instances.get(principal.user_id, instance_id)
        if instance.status is not InstanceStatus.running or not instance.endpoint:
            if instance.status in (InstanceStatus.queued, InstanceStatus.starting):
                raise Unavailable(
                    f"instance {instance_id} is {instance.status.value}: {instance.status_reason}",
                    code="instance_starting",
                    retry_after=2,
                )
            raise FailedPrecondition(
                f"instance {instance_id} is {instance.status.value}; start it to open it",
                code="instance_not_running",
            )
        if len(self._routes) > 10_000:  # only ever a few live; drop what expired
            self._routes = {k: v for k, v in self._routes.items() if v[0] > now}
        self._routes[key] = (now + self._ttl, instance)
        return instance


def _same_origin(conn: HTTPConnection) -> bool:
    """True unless a browser says the request comes from a page of another site."""
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    host = conn.headers.get("x-forwarded-host") or conn.headers.get("host", "")
    return urlsplit(origin).netloc == host


def upstream_target(instance: Instance, conn: HTTPConnection) -> str:
    """The path and query on the instance's server."""
    raw = conn.scope.get("raw_path") or conn.scope["path"].encode()
    path = raw.decode("latin-1")
    if instance.spec.kind is InstanceKind.llamafactory:
        path = "/" + path.removeprefix(instance.base_url)
    query = conn.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def upstream_headers(
    instance: Instance, conn: HTTPConnection, *, skip: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    headers = [
        (name, value)
        for name, value in conn.headers.items()
        if name not in HOP_BY_HOP and name not in skip and name not in ("authorization", "cookie")
    ]
    cookies = [f"{k}={v}" for k, v in conn.cookies.items() if k != SESSION_COOKIE]
    if cookies:
        headers.append(("cookie", "; ".join(cookies)))
    if instance.spec.kind is InstanceKind.jupyterlab:
        headers.append(("authorization", f"token {instance.token}"))
    client = conn.client.host if conn.client else ""
    headers += [
        ("x-forwarded-host", conn.headers.get("host", "")),
        ("x-forwarded-proto", "https" if conn.url.scheme in ("https", "wss") else "http"),
        ("x-forwarded-for", client),
    ]
    return headers


def _response_headers(instance: Instance, response: httpx.Response) -> list[tuple[bytes, bytes]]:
    origin = f"http://{instance.endpoint}"
    out = []
    for name, value in response.headers.multi_items():
        if name.lower() in HOP_BY_HOP:
            continue
        if name.lower() == "location" and value.startswith(origin):
            value = value[len(origin) :] or "/"
        out.append((name.encode("latin-1"), value.encode("latin-1")))
    return out


router = APIRouter(tags=["instances"], include_in_schema=False)


def _proxy(conn: HTTPConnection) -> InstanceProxy:
    proxy: InstanceProxy | None = conn.app.state.deps.instance_proxy
    if proxy is None:
        raise Unavailable("instances are not available on this gateway")
    return proxy


@router.api_route("/instances/{instance_id}", methods=METHODS)
async def without_slash(instance_id: str, request: Request) -> Response:
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/instances/{instance_id}/{query}", status_code=307)


@router.api_route("/instances/{instance_id}/{path:path}", methods=METHODS)
async def forward(instance_id: str, path: str, request: Request) -> Response:
    proxy = _proxy(request)
    principal = await proxy.authenticate(request)
    instance = await proxy.running(principal, instance_id)
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    upstream = proxy.client.build_request(
        request.method,
        f"http://{instance.endpoint}{upstream_target(instance, request)}",
        headers=upstream_headers(instance, request),
        content=request.stream() if has_body else None,
    )
    try:
        response = await proxy.client.send(upstream, stream=True)
    except httpx.HTTPError as exc:
        log.warning("instance did not answer", instance_id=instance_id, error=repr(exc))
        proxy.forget(instance_id)
        await proxy.running(principal, instance_id)  # stopped meanwhile: say so
        raise Unavailable(
            f"instance {instance_id} did not answer ({type(exc).__name__})",
            code="instance_unreachable",
            retry_after=2,
        ) from None
    streamed = StreamingResponse(
        response.aiter_raw(), status_code=response.status_code, background=BackgroundTask(response.aclose)
    )
    streamed.raw_headers = _response_headers(instance, response)
    return streamed


@router.websocket("/instances/{instance_id}/{path:path}")
async def forward_websocket(websocket: WebSocket, instance_id: str, path: str) -> None:
    """Jupyter's kernel channels and terminals, TensorBoard's and Gradio's sockets."""
    try:
        proxy = _proxy(websocket)
        principal = await proxy.authenticate(websocket)
        instance = await proxy.running(principal, instance_id)
    except SuanliError as exc:
        # Refused before the handshake completes: the client sees an HTTP 403.
        await websocket.close(code=1008, reason=exc.message[:120])
        return
    url = f"ws://{instance.endpoint}{upstream_target(instance, websocket)}"
    subprotocols = [cast(Subprotocol, p) for p in websocket.scope.get("subprotocols", [])]
    try:
        upstream = await connect(
            url,
            additional_headers=upstream_headers(instance, websocket, skip=WS_HANDSHAKE),
            subprotocols=subprotocols or None,
            max_size=None,
            proxy=None,
            user_agent_header=None,
        )
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
        log.warning("instance refused a websocket", instance_id=instance_id, error=repr(exc))
        await websocket.close(code=1011)
        return
    async with upstream:
        await websocket.accept(subprotocol=upstream.subprotocol)
        await _relay(websocket, upstream)


async def _relay(websocket: WebSocket, upstream: ClientConnection) -> None:
    """Passes frames both ways, text as text and binary as binary, until either side closes."""

    async def from_client() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(code=message.get("code") or 1000)
                return
            if message.get("bytes") is not None:
                await upstream.send(message["bytes"])
            elif message.get("text") is not None:
                await upstream.send(message["text"])

    async def from_upstream() -> None:
        async for data in _frames(upstream):
            if isinstance(data, bytes):
                await websocket.send_bytes(data)
            else:
                await websocket.send_text(data)
        with contextlib.suppress(Exception):
            await websocket.close(code=upstream.close_code or 1000)

    tasks = [asyncio.create_task(from_client()), asyncio.create_task(from_upstream())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _frames(upstream: ClientConnection) -> AsyncIterator[str | bytes]:
    with contextlib.suppress(websockets.exceptions.ConnectionClosed):
        async for data in upstream:
            yield data
