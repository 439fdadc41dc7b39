"""The Supervisor against real child processes (small `python -c` programs)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from suanli_cli.launcher.children import ChildSpec, ChildStartError, RestartBackoff, Supervisor
from suanli_cli.launcher.nats import port_probe
from suanli_common.testing import free_port


class RecordedOutput:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []
        self.notes: list[tuple[str, str]] = []

    def line(self, child: str, text: str, stream: str) -> None:
        self.lines.append((child, text, stream))

    def note(self, child: str, text: str) -> None:
        self.notes.append((child, text))


def python_child(name: str, code: str, **kwargs: object) -> ChildSpec:
    return ChildSpec(name=name, argv=[sys.executable, "-u", "-c", code], env=dict(os.environ), **kwargs)  # type: ignore[arg-type]


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def output() -> RecordedOutput:
    return RecordedOutput()


@pytest.fixture
async def supervisor(output: RecordedOutput, tmp_path: Path) -> AsyncIterator[Supervisor]:
    sup = Supervisor(
        output,
        backoff=lambda: RestartBackoff(initial_s=0.1, maximum_s=0.4, reset_after_s=30.0),
        stop_grace_s=1.0,
        pid_dir=tmp_path / "run",
    )
    yield sup
    await sup.stop()


async def test_output_lines_are_forwarded_with_the_child_name(
    supervisor: Supervisor, output: RecordedOutput
) -> None:
    code = "import sys, time; print('hello out'); print('hello err', file=sys.stderr); time.sleep(60)"
    await supervisor.start(python_child("greeter", code))
    await eventually(lambda: len(output.lines) == 2)
    assert sorted(output.lines) == [("greeter", "hello err", "stderr"), ("greeter", "hello out", "stdout")]


async def test_a_child_that_exits_is_restarted_with_growing_delays(
    supervisor: Supervisor, output: RecordedOutput, tmp_path: Path
) -> None:
    await supervisor.start(python_child("crasher", "print('up'); raise SystemExit(3)"))
    await eventually(lambda: supervisor.restarts("crasher") >= 4)
    delays = [text for name, text in output.notes if name == "crasher" and "restarting in" in text]
    assert delays[:4] == [
        "exited with code 3; restarting in 0.1s",
        "exited with code 3; restarting in 0.2s",
        "exited with code 3; restarting in 0.4s",
        "exited with code 3; restarting in 0.4s",
    ]
    assert len([line for line in output.lines if line[1] == "up"]) >= 4


async def test_a_restarted_child_gets_the_same_env_and_a_new_pid_file(
    supervisor: Supervisor, output: RecordedOutput, tmp_path: Path
) -> None:
    code = "import os, time; print('port', os.environ['SUANLI_TEST_PORT']); time.sleep(60)"
    spec = ChildSpec(
        name="server",
        argv=[sys.executable, "-u", "-c", code],
        env={**os.environ, "SUANLI_TEST_PORT": "4242"},
    )
    await supervisor.start(spec)
    pid_file = tmp_path / "run" / "server.pid"
    first_pid = int(pid_file.read_text())
    assert first_pid == supervisor.pid("server")
    await eventually(lambda: len(output.lines) == 1)
    os.kill(first_pid, 9)
    await eventually(lambda: supervisor.restarts("server") == 1 and supervisor.pid("server") is not None)
    await eventually(lambda: len(output.lines) == 2)
    assert [text for _, text, _ in output.lines] == ["port 4242", "port 4242"]
    assert int(pid_file.read_text()) == supervisor.pid("server") != first_pid


def test_backoff_starts_over_after_a_long_uptime() -> None:
    backoff = RestartBackoff(initial_s=0.5, maximum_s=10.0, reset_after_s=30.0)
    assert [backoff.delay_after(1.0) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.delay_after(31.0) == 0.5
    assert backoff.delay_after(1.0) == 1.0


async def test_stop_terminates_children_in_reverse_order(output: RecordedOutput, tmp_path: Path) -> None:
    supervisor = Supervisor(output, stop_grace_s=5.0, pid_dir=tmp_path / "run")
    code = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    print('bye', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    for name in ("first", "second", "third"):
        await supervisor.start(python_child(name, code))
    await eventually(lambda: len([line for line in output.lines if line[1] == "ready"]) == 3)
    pids = [supervisor.pid(name) for name in ("first", "second", "third")]
    await supervisor.stop()
    assert [name for name, text, _ in output.lines if text == "bye"] == ["third", "second", "first"]
    assert not any(alive(pid) for pid in pids if pid is not None)
    assert list((tmp_path / "run").iterdir()) == []


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(output: RecordedOutput) -> None:
    supervisor = Supervisor(output, stop_grace_s=0.5)
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('stubborn', flush=True)\n"
        "time.sleep(60)\n"
    )
    await supervisor.start(python_child("stubborn", code))
    await eventually(lambda: len(output.lines) == 1)
    pid = supervisor.pid("stubborn")
    assert pid is not None
    started = time.monotonic()
    await supervisor.stop()
    assert 0.4 < time.monotonic() - started < 5.0
    assert not alive(pid)
    assert ("stubborn", "still running after 0.5s; killing") in output.notes


async def test_stop_also_ends_what_a_child_spawned(output: RecordedOutput) -> None:
    # The grandchild holds the pipes and ignores SIGTERM: the group's SIGKILL ends it.
    code = (
        "import subprocess, sys, time\n"
        "g = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        "print(g.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    supervisor = Supervisor(output, stop_grace_s=0.5)
    await supervisor.start(python_child("parent", code))
    await eventually(lambda: len(output.lines) == 1)
    grandchild = int(output.lines[0][1])
    await supervisor.stop()
    await eventually(lambda: not alive(grandchild), timeout=5.0)


async def test_a_child_that_dies_before_it_is_ready_fails_the_start(output: RecordedOutput) -> None:
    supervisor = Supervisor(output, stop_grace_s=0.5)
    spec = python_child("broken", "raise SystemExit(2)", ready=port_probe(free_port(), timeout_s=30))
    try:
        with pytest.raises(ChildStartError, match="broken exited with code 2 before it was ready"):
            await supervisor.start(spec)
    finally:
        await supervisor.stop()


async def test_the_ready_probe_waits_until_the_child_listens(output: RecordedOutput) -> None:
    port = free_port()
    code = (
        "import socket, sys, time\n"
        "time.sleep(0.5)\n"
        "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
        "time.sleep(60)\n"
    )
    spec = ChildSpec(
        name="listener",
        argv=[sys.executable, "-c", code, str(port)],
        env=dict(os.environ),
        ready=port_probe(port, timeout_s=10),
    )
    supervisor = Supervisor(output, stop_grace_s=1.0)
    try:
        started = time.monotonic()
        await supervisor.start(spec)
        assert time.monotonic() - started >= 0.4
    finally:
        await supervisor.stop()
