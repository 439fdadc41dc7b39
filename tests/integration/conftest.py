"""Fixtures that run the whole platform the way `make run` does: `.venv/bin/suanli up` as a subprocess,
with its own SUANLI_HOME and free ports, stopped with Ctrl-C (SIGINT) at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from suanli_common.testing import free_port

READY_TIMEOUT_S = 90.0
SEED_MODELS_CACHE = Path("/tmp/suanli-test-cache/seed-models")
STOP_TIMEOUT_S = 20.0
FAILURE_TAIL_LINES = 300  # of the platform's output, shown with a failed test


def suanli_executable() -> str:
    return str(Path(sys.executable).parent / "suanli")


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, reaped any moment now, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, found through /proc (children live in process groups of their own)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in parents.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


class Platform:
    """A running `suanli up`: its URL, home, process, child pids and output."""

    def __init__(self, home: Path, extra_env: Mapping[str, str] | None = None) -> None:
        self.home = home
        self.models_dir = SEED_MODELS_CACHE
        self.http_port = free_port()
        self.nats_port = free_port()
        self.auth_grpc_port = free_port()
        self.catalog_grpc_port = free_port()
        self.scheduler_grpc_port = free_port()
        self.rag_grpc_port = free_port()
        self.serve_port = free_port()
        self.auth_metrics_port = free_port()
        self.catalog_metrics_port = free_port()
        self.scheduler_metrics_port = free_port()
        self.rag_metrics_port = free_port()
        self.agent_metrics_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        env = {k: v for k, v in os.environ.items() if k != "SUANLI_NATS_URL"}
        env.update(
            SUANLI_HOME=str(home),
            SUANLI_HTTP_PORT=str(self.http_port),
            SUANLI_NATS_PORT=str(self.nats_port),
            SUANLI_AUTH_GRPC_PORT=str(self.auth_grpc_port),
            SUANLI_CATALOG_GRPC_PORT=str(self.catalog_grpc_port),
            SUANLI_SCHEDULER_GRPC_PORT=str(self.scheduler_grpc_port),
            SUANLI_RAG_GRPC_PORT=str(self.rag_grpc_port),
            SUANLI_AGENT_SLOTS="cpu:2",
            SUANLI_SERVE_PORT=str(self.serve_port),
            SUANLI_AUTH_METRICS_PORT=str(self.auth_metrics_port),
            SUANLI_CATALOG_METRICS_PORT=str(self.catalog_metrics_port),
            SUANLI_SCHEDULER_METRICS_PORT=str(self.scheduler_metrics_port),
            SUANLI_RAG_METRICS_PORT=str(self.rag_metrics_port),
            SUANLI_AGENT_METRICS_PORT=str(self.agent_metrics_port),
            # Ray and vLLM take minutes and gigabytes: only the inference tests turn serving on.
            SUANLI_SERVING="false",
            # Seed models are built once per machine and shared by every platform the tests start.
            SUANLI_MODELS_DIR=str(SEED_MODELS_CACHE),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra_env or {})
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [suanli_executable(), "up"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def new_user(self) -> tuple[str, str]:
        """A new user, signed up and signed in over HTTP: (access token, API key)."""
        email, password = f"user-{uuid.uuid4().hex[:10]}@example.com", "correct-horse-1"
        with httpx.Client(base_url=self.base_url, timeout=30) as api:
            created = api.post("/api/v1/auth/signup", json={"email": email, "password": password})
            assert created.status_code == 201, created.text
            login = api.post("/api/v1/auth/login", json={"email": email, "password": password})
            assert login.status_code == 200, login.text
            token = str(login.json()["access_token"])
            key = api.post(
                "/api/v1/api-keys", json={"name": "sdk"}, headers={"Authorization": f"Bearer {token}"}
            )
            assert key.status_code == 201, key.text
        return token, str(key.json()["key"])

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    def output(self, last: int | None = None) -> str:
        with self._lock:
            return "\n".join(self._lines[-last:] if last else self._lines)

    def child_pid(self, name: str) -> int:
        """The pid the launcher wrote to $SUANLI_HOME/run/<name>.pid."""
        return int((self.home / "run" / f"{name}.pid").read_text())

    def child_pids(self) -> dict[str, int]:
        run = self.home / "run"
        return {path.stem: int(path.read_text()) for path in run.glob("*.pid")} if run.exists() else {}

    def readyz_status(self) -> int | None:
        try:
            return httpx.get(f"{self.base_url}/readyz", timeout=5.0).status_code
        except httpx.HTTPError:
            return None

    def wait_until_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"suanli up exited with {self.process.returncode}:\n{self.output()}")
            if self.readyz_status() == 200:
                return
            time.sleep(0.5)
        pytest.fail(f"/readyz not green after {timeout}s; suanli up said:\n{self.output()}")

    def stop(self) -> None:
        """Ctrl-C; asserts a clean exit (code 0) that leaves no child process behind."""
        if self.process.poll() is not None:
            pytest.fail(f"suanli up had already exited with {self.process.returncode}:\n{self.output()}")
        children = set(self.child_pids().values()) | descendants(self.process.pid)
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"suanli up did not stop within {STOP_TIMEOUT_S}s:\n{self.output()}")
        self._reader.join(timeout=5)
        assert code == 0, f"suanli up exited with {code}:\n{self.output()}"
        deadline = time.monotonic() + 5
        while any(process_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in children if process_alive(pid)]
        assert not left, f"processes left behind: {left}\n{self.output()}"

    def kill(self) -> None:
        """Last resort when a test failed half-way: no process of this platform may survive the run."""
        pids = set(self.child_pids().values()) | descendants(self.process.pid)
        self.process.kill()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.process.wait(timeout=10)


LaunchPlatform = Callable[..., Platform]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test shows what its platform printed last: a hang (a deployment never ready, a job
    never placed) is explained by the services' logs, which are otherwise gone with the run."""
    report = yield
    platform = getattr(item, "funcargs", {}).get("platform")
    if report.failed and call.when == "call" and isinstance(platform, Platform):
        report.sections.append(
            (f"suanli up output (last {FAILURE_TAIL_LINES} lines)", platform.output(FAILURE_TAIL_LINES))
        )
    return report


@pytest.fixture
def launch_platform(tmp_path: Path) -> Iterator[LaunchPlatform]:
    """Starts platforms on demand (`launch_platform(home=..., extra_env=...)`), each ready on return;
    whichever are still running at the end are stopped and checked."""
    started: list[Platform] = []

    def launch(home: Path | None = None, extra_env: Mapping[str, str] | None = None) -> Platform:
        platform = Platform(home or tmp_path / "home", extra_env)
        started.append(platform)
        platform.wait_until_ready()
        return platform

    yield launch
    for platform in started:
        if platform.process.poll() is None:
            platform.stop()


@pytest.fixture(scope="module")
def platform_env() -> dict[str, str]:
    """Extra environment of the module's platform; a test module overrides this fixture (OTEL_*, ...)."""
    return {}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, platform_env: dict[str, str]) -> Iterator[Platform]:
    """One platform for a module's tests, stopped (and checked) after the last one."""
    running = Platform(tmp_path_factory.mktemp("suanli-home"), platform_env)
    try:
        running.wait_until_ready()
    except BaseException:
        running.kill()
        raise
    yield running
    running.stop()
