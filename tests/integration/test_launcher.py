"""`suanli up` as an operator runs it: ready, self-healing when a service dies, clean on Ctrl-C,
and resuming with the same data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from suanli_common.testing import free_port

if TYPE_CHECKING:  # conftest is not importable at run time under --import-mode=importlib
    from conftest import LaunchPlatform, Platform

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


def process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone, only not yet reaped


def new_email() -> str:
    return f"launcher-{uuid.uuid4().hex[:12]}@example.com"


def sign_up(platform: Platform, email: str) -> httpx.Response:
    return httpx.post(
        f"{platform.base_url}/api/v1/auth/signup", json={"email": email, "password": PASSWORD}, timeout=10.0
    )


def test_the_platform_is_ready_and_healthy(platform: Platform) -> None:
    assert httpx.get(f"{platform.base_url}/readyz", timeout=5.0).status_code == 200
    assert httpx.get(f"{platform.base_url}/healthz", timeout=5.0).status_code == 200
    # The launcher polls /readyz on its own schedule, so its line may follow our green check.
    deadline = time.monotonic() + 10
    while "Suanli is ready: " not in platform.output() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "Suanli is ready: " in platform.output()
    assert set(platform.child_pids()) >= {"nats", "auth", "catalog", "scheduler", "trainer-agent", "gateway"}


def test_a_killed_service_is_restarted_and_the_others_keep_running(platform: Platform) -> None:
    auth_pid = platform.child_pid("auth")
    gateway_pid = platform.child_pid("gateway")
    os.kill(auth_pid, signal.SIGKILL)

    deadline = time.monotonic() + 30
    signed_up: httpx.Response | None = None
    while time.monotonic() < deadline:
        if platform.child_pid("auth") != auth_pid and platform.readyz_status() == 200:
            signed_up = sign_up(platform, new_email())
            if signed_up.status_code == 201:
                break
        time.sleep(0.5)
    assert signed_up is not None and signed_up.status_code == 201, platform.output()
    assert platform.child_pid("gateway") == gateway_pid
    assert process_alive(gateway_pid)
    assert not process_alive(auth_pid)
    assert "auth     | exited with code -9; restarting in" in platform.output()


def test_ctrl_c_stops_everything_and_the_next_run_finds_the_data(
    launch_platform: LaunchPlatform, tmp_path: Path
) -> None:
    home = tmp_path / "persistent-home"
    first = launch_platform(home=home)
    email = new_email()
    assert sign_up(first, email).status_code == 201
    pids = first.child_pids()
    assert set(pids) >= {"nats", "auth", "gateway"}

    first.stop()  # SIGINT, exit code 0 within 20 s, nothing left behind (asserted inside)
    assert not any(process_alive(pid) for pid in pids.values())
    assert not list((home / "run").glob("*.pid"))

    second = launch_platform(home=home)
    login = httpx.post(
        f"{second.base_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=10.0
    )
    assert login.status_code == 200, login.text
    assert login.json()["token_type"] == "bearer"
    assert sign_up(second, email).status_code != 201  # the user is still there


def test_a_taken_port_fails_fast_naming_the_variable(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {
            **os.environ,
            "SUANLI_HOME": str(tmp_path / "home"),
            "SUANLI_HTTP_PORT": str(port),
            "SUANLI_NATS_PORT": str(free_port()),
            "SUANLI_AUTH_GRPC_PORT": str(free_port()),
        }
        env.pop("SUANLI_NATS_URL", None)
        suanli = str(Path(sys.executable).parent / "suanli")
        result = subprocess.run([suanli, "up"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"port {port}" in result.stdout and "SUANLI_HTTP_PORT" in result.stdout
