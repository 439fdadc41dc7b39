"""The gateway's HTTP/1.1 client to the replicas, against a real server (uvicorn on a free port),
on asyncio's own event loop and on uvloop (which uvicorn picks where it makes the loop): keep-alive reuse,
streamed bodies as they come, errors, and a closed response cutting the replica off."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import uvloop
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from test_inference_routes import serve_replica

from suanli_common.testing import free_port
from suanli_inference_gateway.openai.inference.replica_client import (
    ReplicaPool,
    ReplicaTimeout,
    ReplicaUnreachable,
)

NewLoop = Callable[[], asyncio.AbstractEventLoop]
# Sync tests that run their own loop, since pytest-asyncio picks one loop kind for every test.
LOOPS = pytest.mark.parametrize(
    "new_loop", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)


def run(new_loop: NewLoop, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(scenario())


class Replica:
    def __init__(self) -> None:
        self.app = FastAPI()
        self.peers: list[Any] = []
        self.cut = asyncio.Event()

        @self.app.post("/echo")
        async def echo(request: Request) -> Any:
            self.peers.append(request.client)
            return {"body": (await request.body()).decode(), "trace": request.headers.get("traceparent")}

        @self.app.post("/stream")
        async def stream() -> StreamingResponse:
            async def events() -> AsyncIterator[bytes]:
                try:
                    for n in range(200):
                        yield f"data: {n}\n\n".encode()
                        await asyncio.sleep(0.005)
                finally:
                    self.cut.set()

            return StreamingResponse(events(), media_type="text/event-stream")

        @self.app.post("/slow")
        async def slow() -> dict[str, str]:
            await asyncio.sleep(1)
            return {}


@contextlib.asynccontextmanager
async def replica() -> AsyncIterator[tuple[Replica, str]]:
    stand_in = Replica()
    async with serve_replica(stand_in.app) as url:
        yield stand_in, url


@LOOPS
def test_answers_come_whole_and_connections_are_kept_alive(new_loop: NewLoop) -> None:
    async def scenario() -> None:
        async with replica() as (stand_in, url):
            pool = ReplicaPool()
            for n in range(3):
                response = await pool.request(f"{url}/echo", f'{{"n":{n}}}'.encode(), {"traceparent": "00-x"})
                assert response.status_code == 200
                assert await response.aread() == f'{{"body":"{{\\"n\\":{n}}}","trace":"00-x"}}'.encode()
                await response.aclose()
            assert len({tuple(peer) for peer in stand_in.peers}) == 1  # one connection, reused
            await pool.aclose()

    run(new_loop, scenario)


@LOOPS
def test_a_stream_comes_as_it_is_made_and_closing_it_early_cuts_the_replica_off(new_loop: NewLoop) -> None:
    async def scenario() -> None:
        async with replica() as (stand_in, url):
            pool = ReplicaPool()
            response = await pool.request(f"{url}/stream", b"{}", {})
            assert (await response.read()).startswith(b"data: 0\n\n")
            response.abort()
            await response.aclose()
            await asyncio.wait_for(stand_in.cut.wait(), 5)  # the replica's generator ended early
            await pool.aclose()

    run(new_loop, scenario)


@LOOPS
def test_an_unreachable_replica_and_a_silent_one_are_errors(new_loop: NewLoop) -> None:
    async def scenario() -> None:
        pool = ReplicaPool(connect_timeout_s=1, read_timeout_s=0.2)
        with pytest.raises(ReplicaUnreachable):
            await pool.request(f"http://127.0.0.1:{free_port()}/echo", b"{}", {})
        async with replica() as (_, url):
            with pytest.raises(ReplicaTimeout):
                await pool.request(f"{url}/slow", b"{}", {})
        await pool.aclose()

    run(new_loop, scenario)
