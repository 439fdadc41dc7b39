"""Starts the real platform (`suanli up`) on free ports in a temporary SUANLI_HOME, for benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from suanli_common.testing import free_port


@contextmanager
def running_platform(extra_env: dict[str, str] | None = None, timeout: float = 120.0) -> Iterator[str]:
    home = Path(tempfile.mkdtemp(prefix="suanli-bench-"))
    http_port = free_port()
    env = {
        **os.environ,
        "SUANLI_HOME": str(home),
        "SUANLI_HTTP_PORT": str(http_port),
        "SUANLI_NATS_PORT": str(free_port()),
        "SUANLI_AUTH_GRPC_PORT": str(free_port()),
        "SUANLI_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    suanli = str(Path(sys.executable).parent / "suanli")
    process = subprocess.Popen([suanli, "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the platform did not become ready")
            time.sleep(0.3)
        yield base_url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
