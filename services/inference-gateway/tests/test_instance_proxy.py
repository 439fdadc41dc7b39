"""/instances/{id}/ through the gateway, HTTP and WebSocket, in front of a real server (a small
Starlette app on uvicorn that echoes what reaches it). The instances come from a fake of the
scheduler's API: the whole path, with JupyterLab, TensorBoard and the real scheduler, is
tests/integration/test_instances_flow.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from suanli_common.errors import NotFound
from suanli_common.testing import free_port
from suanli_inference_gateway.app import create_app
from suanli_inference_gateway.clients.instances import (
    Instance,
    InstanceKind,
    InstanceSpec,
    InstanceStatus,
)
from suanli_inference_gateway.platform.instances.proxy import SESSION_COOKIE, InstanceProxy

if TYPE_CHECKING:
    from conftest import Gateway

KERNEL_PROTOCOL = "v1.kernel.websocket.jupyter.org"


# ---- the instance's server: echoes what reaches it ----------------------------------------------


async def echo(request: Request) -> Response:
    if request.url.path.endswith("/redirect"):
        return RedirectResponse(f"http://{request.url.netloc}/instances/inst_lab/elsewhere", status_code=302)
    body = await request.body()
    response = JSONResponse(
        {
            "path": request.scope["raw_path"].decode(),
            "query": request.url.query,
            "authorization": request.headers.get("authorization"),
            "cookie": request.headers.get("cookie"),
            "forwarded_host": request.headers.get("x-forwarded-host"),
            "body": body.decode(),
        }
    )
    response.set_cookie("_xsrf", "a")
    response.set_cookie("other", "b")
    return response


async def echo_socket(websocket: WebSocket) -> None:
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=offered[0] if offered else None)
    await websocket.send_text(f"authorization={websocket.headers.get('authorization')}")
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await websocket.send_bytes(message["bytes"][::-1])
        else:
            await websocket.send_text(message["text"].upper())


@contextlib.asynccontextmanager
async def serving(app: Any, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    for _ in range(400):
        if server.started:
            break
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        await task


# ---- the scheduler's instances, faked -------------------------------------------------------------


class FakeInstances:
    """InstancesApi's reads: an instance is found by its owner only, as the scheduler does."""

    def __init__(self) -> None:
        self.instances: dict[str, Instance] = {}

    async def get(self, caller_id: str, instance_id: str) -> Instance:
        found = self.instances.get(instance_id)
        if found is None or found.owner_id != caller_id:
            raise NotFound(f"no instance {instance_id}", param="instance_id")
        return found


def instance(instance_id: str, owner: str, kind: InstanceKind, endpoint: str) -> Instance:
    return Instance(
        id=instance_id,
        owner_id=owner,
        spec=InstanceSpec(name=instance_id, kind=kind, cpu_millis=1000, memory_mb=1024),
        status=InstanceStatus.running,
        status_reason="",
        job_id="job_1",
        node_id="node-a",
        endpoint=endpoint,
        token="jupyter-token",
        base_url=f"/instances/{instance_id}/",
        storage_path="/volumes/instances/" + instance_id,
        created_at=datetime.now(UTC),
        started_at=datetime.now(UTC),
    )


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    app = Starlette(
        routes=[
            Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "DELETE"]),
            WebSocketRoute("/{path:path}", echo_socket),
        ]
    )
    port = free_port()
    async with serving(app, port):
        yield f"127.0.0.1:{port}"


@pytest.fixture
async def lab(gateway: Gateway, upstream: str) -> AsyncIterator[tuple[Gateway, FakeInstances, str]]:
    """The gateway with a proxy over the fake; ada's token and her JupyterLab and LLaMA-Factory."""
    token = await gateway.sign_in()
    fake = FakeInstances()
    owner = gateway.user_id()
    fake.instances["inst_lab"] = instance("inst_lab", owner, InstanceKind.jupyterlab, upstream)
    fake.instances["inst_lf"] = instance("inst_lf", owner, InstanceKind.llamafactory, upstream)
    async with httpx.AsyncClient(trust_env=False) as client:
        gateway.deps.instances = fake  # type: ignore[assignment]
        gateway.deps.instance_proxy = InstanceProxy(fake, gateway.deps.authenticator, client, route_ttl_s=0)  # type: ignore[arg-type]
        yield gateway, fake, token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_owner_reaches_the_server_with_the_servers_own_token_instead_of_theirs(
    lab: tuple[Gateway, FakeInstances, str],
) -> None:
    gateway, _, token = lab
    response = await gateway.http.post(
        "/instances/inst_lab/api/contents/a%20b.txt?type=file", content=b"body", headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["path"] == "/instances/inst_lab/api/contents/a%20b.txt" and seen["query"] == "type=file"
    assert seen["authorization"] == "token jupyter-token" and seen["body"] == "body"
    assert seen["forwarded_host"] == "gateway"
    # Both cookies the server set reach the browser.
    assert sorted(c.split("=")[0] for c in response.headers.get_list("set-cookie")) == ["_xsrf", "other"]
    redirect = await gateway.http.get("/instances/inst_lab/redirect", headers=bearer(token))
    assert redirect.status_code == 302 and redirect.headers["location"] == "/instances/inst_lab/elsewhere"
    bare = await gateway.http.get("/instances/inst_lab", headers=bearer(token))
    assert bare.status_code == 307 and bare.headers["location"] == "/instances/inst_lab/"


async def test_gradio_gets_its_requests_without_the_prefix(lab: tuple[Gateway, FakeInstances, str]) -> None:
    gateway, _, token = lab
    seen = (await gateway.http.get("/instances/inst_lf/config?x=1", headers=bearer(token))).json()
    assert seen["path"] == "/config" and seen["query"] == "x=1"
    assert seen["authorization"] is None  # only Jupyter has a token of its own


async def test_nobody_else_reaches_it(lab: tuple[Gateway, FakeInstances, str]) -> None:
    gateway, _, _ = lab
    missing = await gateway.http.get("/instances/inst_lab/api/status")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_credentials"
    jupyter_style = await gateway.http.get(
        "/instances/inst_lab/api/status", headers={"Authorization": "token jupyter-token"}
    )
    assert jupyter_style.status_code == 401  # the server's token is no way in from outside
    other = await gateway.sign_in("bob@example.com")
    foreign = await gateway.http.get("/instances/inst_lab/api/status", headers=bearer(other))
    assert foreign.status_code == 404 and foreign.json()["error"]["type"] == "not_found_error"
    bad = await gateway.http.get("/instances/inst_lab/api/status", headers=bearer("sk-not-a-key"))
    assert bad.status_code == 401


async def test_a_browser_uses_the_session_cookie_from_this_site_only(
    lab: tuple[Gateway, FakeInstances, str],
) -> None:
    gateway, _, token = lab
    opened = await gateway.http.post("/api/v1/instances/inst_lab/session", headers=bearer(token))
    assert opened.status_code == 204
    set_cookie = opened.headers["set-cookie"]
    assert set_cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in set_cookie
    assert "Path=/instances/inst_lab/" in set_cookie and "SameSite=strict" in set_cookie
    cookies = {"Cookie": f"{SESSION_COOKIE}={token}; _xsrf=a"}
    page = await gateway.http.get("/instances/inst_lab/lab", headers=cookies)
    assert page.status_code == 200
    assert page.json()["cookie"] == "_xsrf=a"  # the credential stops at the gateway
    same_site = await gateway.http.post(
        "/instances/inst_lab/api/kernels", headers={**cookies, "Origin": "http://gateway"}
    )
    assert same_site.status_code == 200
    cross_site = await gateway.http.post(
        "/instances/inst_lab/api/kernels", headers={**cookies, "Origin": "https://evil.example"}
    )
    assert cross_site.status_code == 403 and cross_site.json()["error"]["code"] == "cross_site"


async def test_an_instance_that_is_not_running_says_so(lab: tuple[Gateway, FakeInstances, str]) -> None:
    gateway, fake, token = lab
    fake.instances["inst_lab"] = replace(
        fake.instances["inst_lab"], status=InstanceStatus.stopped, endpoint=""
    )
    stopped = await gateway.http.get("/instances/inst_lab/lab", headers=bearer(token))
    assert stopped.status_code == 409 and stopped.json()["error"]["code"] == "instance_not_running"
    fake.instances["inst_lab"] = replace(
        fake.instances["inst_lab"], status=InstanceStatus.starting, status_reason="staging mounts"
    )
    starting = await gateway.http.get("/instances/inst_lab/lab", headers=bearer(token))
    assert starting.status_code == 503 and starting.headers["retry-after"] == "2"
    assert "staging mounts" in starting.json()["error"]["message"]
    fake.instances["inst_lab"] = replace(
        fake.instances["inst_lab"], status=InstanceStatus.running, endpoint=f"127.0.0.1:{free_port()}"
    )
    gone = await gateway.http.get("/instances/inst_lab/lab", headers=bearer(token))
    assert gone.status_code == 503 and gone.json()["error"]["code"] == "instance_unreachable"


async def test_websockets_pass_both_ways_with_the_subprotocol_the_server_chose(
    lab: tuple[Gateway, FakeInstances, str],
) -> None:
    gateway, _, token = lab
    # The same gateway on a real port: the ASGI test transport has no WebSockets.
    port = free_port()
    url = f"ws://127.0.0.1:{port}/instances/inst_lab/api/kernels/k1/channels?session_id=s"
    async with serving(create_app(gateway.settings, gateway.deps), port):
        async with connect(
            url,
            additional_headers=bearer(token),
            subprotocols=[KERNEL_PROTOCOL],
            proxy=None,  # type: ignore[list-item]
        ) as ws:
            assert ws.subprotocol == KERNEL_PROTOCOL
            assert await ws.recv() == "authorization=token jupyter-token"
            await ws.send("execute")
            assert await ws.recv() == "EXECUTE"
            await ws.send(b"\x01\x02\x03")
            assert await ws.recv() == b"\x03\x02\x01"
        for headers in ({}, bearer(await gateway.sign_in("eve@example.com"))):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, additional_headers=headers, proxy=None):
                    pass
            assert refused.value.response.status_code == 403
