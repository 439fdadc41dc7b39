"""An `mpi` job on a node of rank > 0: connects out to the launcher (retrying until it listens,
like torchrun's static rendezvous), proves the attempt's secret, and runs the commands the launcher
relays from mpirun's rsh agent (orted), streaming their output back. It is the job's process on this
node, so orted and the ranks under it stay in the job's process group: the agent's cancel,
max-run-time and death stop them as they stop any job."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from suanli_trainer_agent.mpi import wire
from suanli_trainer_agent.mpi.wire import say

CONNECT_RETRY_S = 1.0
KILL_GRACE_S = 5.0


@dataclass
class WorkerOptions:
    node_rank: int
    master_addr: str
    master_port: int
    token: str
    join_timeout_s: float = 900.0  # torchrun's default rendezvous timeout
    env: dict[str, str] = field(default_factory=dict)  # the sessions' environment (the job's)


def missing_tools(env: dict[str, str]) -> str:
    """Why this node cannot host mpirun's daemon, or ""."""
    if shutil.which("orted", path=env.get("PATH")) is None:
        return "`orted` (Open MPI) is not on this node's PATH; install Open MPI (Debian: openmpi-bin)"
    return ""


def foreground(command: str) -> str:
    """The command as this node's shell runs it: without `--daemonize`, which mpirun asks for when
    it spawns every daemon itself (plm_rsh_no_tree_spawn), since a daemonized orted would leave the
    job's process group, out of reach of the agent's stop (in the foreground it keeps this rsh
    session open, as under ssh); and a bare `orted ...` exec'd, so that a kill of the session
    reaches orted itself (dash does not exec the last command of `sh -c`)."""
    words = [word for word in command.split(" ") if word != "--daemonize"]
    kept = " ".join(words).strip()
    return f"exec {kept}" if kept.split(" ", 1)[0] == "orted" else kept


class Worker:
    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.host = ""
        self._sessions: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        options = self.options
        problem = missing_tools(options.env)
        try:
            reader, writer = await self._connect(problem)
        except TimeoutError as exc:
            say(f"mpi worker: {exc}")
            return 1
        if problem:
            say(f"mpi worker (node rank {options.node_rank}): {problem}")
            writer.close()
            return 127
        say(f"mpi worker: joined the launcher at {options.master_addr}:{options.master_port} as {self.host}")
        code = 1
        try:
            while True:
                message = await wire.receive(reader)
                if message is None:
                    say("mpi worker: the launcher went away before the job ended")
                    break
                op = message.get("op")
                if op == "exec":
                    self._start(int(message["id"]), str(message.get("command", "")), writer)
                elif op == "kill":
                    self._spawn(self._kill(int(message["id"])))
                elif op == "done":
                    say(f"mpi worker: the launcher ended the job (mpirun exited with {message.get('code')})")
                    code = 0
                    break
        finally:
            await asyncio.gather(*(self._kill(s) for s in list(self._sessions)))
            for task in list(self._tasks):
                task.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        return code

    async def _connect(self, problem: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        options = self.options
        deadline = time.monotonic() + options.join_timeout_s
        said = ""
        while True:
            try:
                reader, writer = await asyncio.open_connection(
                    options.master_addr, options.master_port, limit=wire.LINE_LIMIT
                )
                try:
                    self.host = await wire.join_as_worker(
                        reader, writer, options.token, options.node_rank, problem
                    )
                    return reader, writer
                except wire.HandshakeError as exc:
                    writer.close()
                    reason = str(exc)
            except OSError as exc:
                reason = f"cannot reach it yet ({exc.strerror or exc})"
            if reason != said:
                where = f"{options.master_addr}:{options.master_port}"
                say(f"mpi worker: waiting for the launcher at {where}: {reason}")
                said = reason
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the launcher did not take this worker within {options.join_timeout_s:g} s"
                )
            await asyncio.sleep(CONNECT_RETRY_S)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start(self, session: int, command: str, writer: asyncio.StreamWriter) -> None:
        self._spawn(self._session(session, command, writer))

    async def _session(self, session: int, command: str, writer: asyncio.StreamWriter) -> None:
        runnable = foreground(command)
        say(f"mpi worker: {self.host} starts `{runnable.removeprefix('exec ').split(' ', 1)[0]}` for mpirun")
        env = {**self.options.env, "SUANLI_MPI_HOST": self.host}
        try:
            process = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                runnable,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            await wire.send(writer, wire.output(session, "stderr", f"{self.host}: {exc}\n".encode()))
            await wire.send(writer, {"op": "exit", "id": session, "code": 127})
            return
        self._sessions[session] = process
        assert process.stdout is not None and process.stderr is not None
        await asyncio.gather(
            _relay(process.stdout, session, "stdout", writer),
            _relay(process.stderr, session, "stderr", writer),
        )
        code = await process.wait()
        self._sessions.pop(session, None)
        with contextlib.suppress(ConnectionError):
            await wire.send(writer, {"op": "exit", "id": session, "code": code if code >= 0 else 128 - code})

    async def _kill(self, session: int) -> None:
        process = self._sessions.get(session)
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=KILL_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def _relay(stream: asyncio.StreamReader, session: int, name: str, writer: asyncio.StreamWriter) -> None:
    while data := await stream.read(1 << 16):
        with contextlib.suppress(ConnectionError):
            await wire.send(writer, wire.output(session, name, data))


def environment() -> tuple[dict[str, str], str]:
    """The job's environment without the secret, and the secret."""
    env = dict(os.environ)
    return env, env.pop(wire.TOKEN_ENV, "")
