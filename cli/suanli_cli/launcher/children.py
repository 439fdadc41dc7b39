"""Supervised child processes: start each in its own process group, forward its output line by line
prefixed with its name, restart it with exponential backoff when it dies, stop them all in reverse order.

Each child gets a process group of its own so that the terminal's Ctrl-C reaches the launcher only:
the launcher decides the order in which children stop (services before the NATS they drain into), and
a signal sent to the group also reaches whatever the child itself spawned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

# Long lines (a JSON log line with a traceback) must not break the reader: asyncio's default is 64 KiB.
_LINE_LIMIT = 1024 * 1024

ReadyProbe = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class ChildSpec:
    """How to run one child. `ready`, when given, returns once the child serves (it raises on timeout)."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    ready: ReadyProbe | None = None
    cwd: Path | None = None


class ChildOutput(Protocol):
    """Where a child's output lines go (`stream` is "stdout" or "stderr"), and the launcher's own notes."""

    def line(self, child: str, text: str, stream: str) -> None: ...

    def note(self, child: str, text: str) -> None: ...


class ChildStartError(RuntimeError):
    """A child exited (or its probe failed) before it was ready."""


@dataclass
class RestartBackoff:
    """Exponential delays between restarts; a child that stayed up `reset_after_s` starts over."""

    initial_s: float = 0.5
    maximum_s: float = 10.0
    reset_after_s: float = 30.0
    _next_s: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._next_s = self.initial_s

    def delay_after(self, uptime_s: float) -> float:
        if uptime_s >= self.reset_after_s:
            self._next_s = self.initial_s
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self.maximum_s)
        return delay


@dataclass
class _Child:
    spec: ChildSpec
    backoff: RestartBackoff
    process: asyncio.subprocess.Process
    started_at: float
    restarts: int = 0
    watcher: asyncio.Task[None] | None = None


class Supervisor:
    """Runs children until `stop()`; a child that exits on its own is started again with the same spec."""

    def __init__(
        self,
        output: ChildOutput,
        *,
        backoff: Callable[[], RestartBackoff] = RestartBackoff,
        stop_grace_s: float = 10.0,
        pid_dir: Path | None = None,
    ) -> None:
        self._output = output
        self._new_backoff = backoff
        self._stop_grace_s = stop_grace_s
        self._pid_dir = pid_dir
        self._children: dict[str, _Child] = {}
        self._stopping = asyncio.Event()

    def pid(self, name: str) -> int | None:
        child = self._children.get(name)
        if child is None or child.process.returncode is not None:
            return None
        return child.process.pid

    def restarts(self, name: str) -> int:
        return self._children[name].restarts

    def names(self) -> list[str]:
        return list(self._children)

    async def start(self, spec: ChildSpec) -> None:
        """Starts the child and, when it has a probe, returns once it is ready.

        Raises `ChildStartError` when the child exits before that: a service that cannot start on a
        fresh launch is a bug to show at once, not one to retry forever.
        """
        if spec.name in self._children:
            raise ValueError(f"a child named {spec.name!r} is already supervised")
        process = await self._spawn(spec)
        child = _Child(spec=spec, backoff=self._new_backoff(), process=process, started_at=time.monotonic())
        self._children[spec.name] = child
        child.watcher = asyncio.create_task(self._watch(child), name=f"watch-{spec.name}")
        if spec.ready is not None:
            await self._wait_ready(child, spec.ready)

    async def stop(self) -> None:
        """SIGTERM to each child's group in reverse start order, SIGKILL after the grace period."""
        self._stopping.set()
        for child in reversed(list(self._children.values())):
            await self._terminate(child)
        watchers = [c.watcher for c in self._children.values() if c.watcher is not None]
        await asyncio.gather(*watchers, return_exceptions=True)
        # A watcher may have been spawning a restart while we stopped: it terminates that one itself.
        for child in self._children.values():
            if child.process.returncode is None:
                await self._terminate(child)
            self._remove_pid_file(child.spec.name)

    async def _wait_ready(self, child: _Child, probe: ReadyProbe) -> None:
        probe_task = asyncio.ensure_future(probe())
        exit_task = asyncio.ensure_future(_exit_code(child.process))
        try:
            done, _ = await asyncio.wait({probe_task, exit_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exit_task.cancel()
            if not probe_task.done():
                probe_task.cancel()
        if probe_task in done:
            try:
                probe_task.result()
            except Exception as exc:
                raise ChildStartError(f"{child.spec.name} did not become ready: {exc}") from exc
            return
        raise ChildStartError(
            f"{child.spec.name} exited with code {child.process.returncode} before it was ready"
        )

    async def _spawn(self, spec: ChildSpec) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *spec.argv,
            env=dict(spec.env),
            cwd=spec.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=_LINE_LIMIT,
        )
        self._write_pid_file(spec.name, process.pid)
        self._output.note(spec.name, f"started (pid {process.pid})")
        return process

    async def _watch(self, child: _Child) -> None:
        """Forwards output; restarts the child each time it exits, until the supervisor stops."""
        while True:
            process = child.process
            assert process.stdout is not None and process.stderr is not None
            forwarding = asyncio.gather(
                self._forward(child.spec.name, process.stdout, "stdout"),
                self._forward(child.spec.name, process.stderr, "stderr"),
            )
            code = await _exit_code(process)
            if not self._stopping.is_set():
                # What the dead child spawned may hold its ports and its pipes: it goes too.
                _signal_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(forwarding, timeout=2.0)
            if self._stopping.is_set():
                return
            uptime = time.monotonic() - child.started_at
            delay = child.backoff.delay_after(uptime)
            self._output.note(child.spec.name, f"exited with code {code}; restarting in {delay:.1f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            if self._stopping.is_set():
                return
            child.process = await self._spawn(child.spec)
            child.started_at = time.monotonic()
            child.restarts += 1
            if self._stopping.is_set():
                await self._terminate(child)
                return

    async def _forward(self, name: str, stream: asyncio.StreamReader, kind: str) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the limit: pass on what was buffered
                raw = await stream.read(_LINE_LIMIT)
            if not raw:
                return
            self._output.line(name, raw.decode(errors="replace").rstrip("\r\n"), kind)

    async def _terminate(self, child: _Child) -> None:
        process = child.process
        if process.returncode is None:
            self._output.note(child.spec.name, "stopping")
            _signal_group(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(_exit_code(process), timeout=self._stop_grace_s)
            except TimeoutError:
                self._output.note(child.spec.name, f"still running after {self._stop_grace_s:g}s; killing")
                _signal_group(process.pid, signal.SIGKILL)
                await _exit_code(process)
        # The leader is gone; whatever it spawned in its group must not outlive the launcher.
        _signal_group(process.pid, signal.SIGKILL)

    def _write_pid_file(self, name: str, pid: int) -> None:
        if self._pid_dir is None:
            return
        self._pid_dir.mkdir(parents=True, exist_ok=True)
        (self._pid_dir / f"{name}.pid").write_text(f"{pid}\n")

    def _remove_pid_file(self, name: str) -> None:
        if self._pid_dir is not None:
            (self._pid_dir / f"{name}.pid").unlink(missing_ok=True)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _exit_code(process: asyncio.subprocess.Process) -> int:
    """The exit code, as soon as the process is reaped.

    `Process.wait()` on Python 3.11 also waits until its pipes close, which never happens while a
    grandchild holds them; `returncode` is set when the process itself is reaped.
    """
    while process.returncode is None:  # noqa: ASYNC110 - no event to wait on, see above
        await asyncio.sleep(0.05)
    return process.returncode
