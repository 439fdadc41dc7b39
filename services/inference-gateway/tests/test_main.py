"""The process wiring: `serve` over a real port, a real nats-server and the auth contract."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from suanli_common.testing import NatsServer, free_port
from suanli_inference_gateway.main import serve
from suanli_inference_gateway.settings import GatewaySettings

if TYPE_CHECKING:
    from auth_contract_double import RunningAuth


async def test_serve_becomes_ready_and_stops_on_cancel(
    nats_server: NatsServer, auth_server: RunningAuth, tmp_path: Path
) -> None:
    port = free_port()
    settings = GatewaySettings(
        home=tmp_path / "var",
        nats_url=nats_server.url,
        auth_address=auth_server.address,
        http_port=port,
        ready_services=["auth"],
    )
    task = asyncio.ensure_future(serve(settings))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            async with asyncio.timeout(15):
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        response = await http.get("/readyz")
                        if response.status_code == 200:
                            break
                    await asyncio.sleep(0.05)
            assert response.json()["checks"] == {"nats": "ok", "auth": "ok"}
            signup = await http.post(
                "/api/v1/auth/signup", json={"email": "e2e@example.com", "password": "long enough"}
            )
            assert signup.status_code == 201
            assert (await http.get("/")).status_code == 200, "the repository's web/ is served"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    assert task.done()
