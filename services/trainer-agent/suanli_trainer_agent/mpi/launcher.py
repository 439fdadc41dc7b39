"""An `mpi` job on node rank 0: waits for the other nodes' workers on MASTER_PORT, writes a
hostfile of all the job's nodes (`slots=<gpus per node>`), and runs the user's mpirun with an rsh
agent of its own that starts mpirun's daemons through those workers' connections. The job's exit
status is mpirun's; when mpirun ends, the workers are told to finish."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from suanli_trainer_agent.mpi import wire
from suanli_trainer_agent.mpi.wire import say

MPI_LAUNCHERS = ("mpirun", "mpiexec", "orterun")


@dataclass
class LaunchOptions:
    command: str
    nnodes: int
    slots: int
    master_port: int
    token: str
    join_timeout_s: float = 900.0
    env: dict[str, str] = field(default_factory=dict)  # the job's environment, for mpirun


def worker_host(node_rank: int) -> str:
    """The hostfile name of a worker node: stable, and never this machine's own (so OpenMPI reaches
    it through the rsh agent even when the job's nodes share one machine)."""
    return f"suanli-node-{node_rank}"


def hostfile(local_host: str, slots: int, nnodes: int) -> str:
    lines = [f"{local_host} slots={slots}"]
    lines += [f"{worker_host(rank)} slots={slots}" for rank in range(1, nnodes)]
    return "\n".join(lines) + "\n"


def mpirun_argv(command: str, np: int) -> list[str]:
    """The user's own `mpirun ...` runs as written (through the shell, like every job command);
    anything else runs once per slot of the job: `mpirun -np <nodes x slots> sh -c <command>`."""
    tokens = shlex.split(command)
    if tokens and os.path.basename(tokens[0]) in MPI_LAUNCHERS:
        return ["/bin/sh", "-c", command]
    return ["mpirun", "-np", str(np), "/bin/sh", "-c", command]


def mpi_env(base: dict[str, str], *, hostfile_path: Path, rsh_agent: Path, local_host: str) -> dict[str, str]:
    """mpirun's environment: the hostfile and rsh agent as OpenMPI MCA defaults, so a user's own
    mpirun picks them up without flags."""
    return {
        **base,
        "SUANLI_MPI_HOSTFILE": str(hostfile_path),
        "SUANLI_MPI_HOST": local_host,
        "OMPI_MCA_orte_default_hostfile": str(hostfile_path),
        "OMPI_MCA_plm_rsh_agent": str(rsh_agent),
        # mpirun spawns every daemon itself: with tree spawn, past the routing tree's fan-out the
        # workers' orteds would have to reach further nodes, and they have no rsh path of their own.
        "OMPI_MCA_plm_rsh_no_tree_spawn": "1",
        # Jobs run as the agent's user, often root in a container; OpenMPI refuses root without these.
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    }


@dataclass
class WorkerLink:
    node_rank: int
    host: str
    writer: asyncio.StreamWriter
    sessions: dict[int, asyncio.Queue[wire.Message]] = field(default_factory=dict)
    gone: asyncio.Event = field(default_factory=asyncio.Event)


class Launcher:
    def __init__(self, options: LaunchOptions) -> None:
        self.options = options
        self.local_host = socket.gethostname()
        self.workers: dict[str, WorkerLink] = {}
        self._failure = ""
        self._changed = asyncio.Event()
        self._session_ids = itertools.count(1)
        self._stopping = False
        self._mpirun: asyncio.subprocess.Process | None = None

    async def run(self) -> int:
        options = self.options
        if shutil.which("mpirun", path=options.env.get("PATH")) is None:
            say(
                "mpi job: `mpirun` is not on this node's PATH; install Open MPI on every node "
                "(Debian: apt-get install openmpi-bin)"
            )
            return 127
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._on_term)
        try:
            server = await asyncio.start_server(
                self._on_worker, port=options.master_port, limit=wire.LINE_LIMIT, reuse_address=True
            )
        except OSError as exc:
            say(f"mpi launcher: cannot listen on port {options.master_port}: {exc}")
            return 1
        try:
            async with server:
                if not await self._gather():
                    return 143 if self._stopping else 1
                with tempfile.TemporaryDirectory(prefix="suanli-mpi-") as folder:
                    return await self._run_mpirun(Path(folder))
        finally:
            for link in self.workers.values():
                with contextlib.suppress(Exception):
                    link.writer.close()

    def _on_term(self) -> None:
        # The agent's stop signals the whole group, mpirun included; pass it on for a lone TERM too.
        self._stopping = True
        self._changed.set()
        if self._mpirun is not None and self._mpirun.returncode is None:
            self._mpirun.send_signal(signal.SIGTERM)

    async def _gather(self) -> bool:
        """Waits until every worker has joined; False (having said why) if that cannot happen."""
        wanted = self.options.nnodes - 1
        deadline = time.monotonic() + self.options.join_timeout_s
        if wanted:
            say(f"mpi launcher: waiting for {wanted} worker node(s) on port {self.options.master_port}")
        while len(self.workers) < wanted:
            if self._failure:
                say(f"mpi launcher: {self._failure}")
                return False
            if self._stopping:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                joined = ", ".join(sorted(self.workers)) or "none"
                say(
                    f"mpi launcher: only {len(self.workers)} of {wanted} worker node(s) joined within "
                    f"{self.options.join_timeout_s:g} s (joined: {joined})"
                )
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=left)
        return not self._failure

    async def _run_mpirun(self, folder: Path) -> int:
        options = self.options
        hosts = folder / "hostfile"
        hosts.write_text(hostfile(self.local_host, options.slots, options.nnodes))
        rsh_socket = folder / "rsh.sock"
        relay = await asyncio.start_unix_server(self._on_rsh, path=str(rsh_socket), limit=wire.LINE_LIMIT)
        agent = folder / "rsh"
        python, relay_path = shlex.quote(sys.executable), shlex.quote(str(rsh_socket))
        agent.write_text(f'#!/bin/sh\nexec {python} -m suanli_trainer_agent.mpi rsh {relay_path} "$@"\n')
        agent.chmod(0o755)
        env = mpi_env(options.env, hostfile_path=hosts, rsh_agent=agent, local_host=self.local_host)
        argv = mpirun_argv(options.command, options.nnodes * options.slots)
        say(f"mpi launcher: running mpirun over {options.nnodes} node(s) x {options.slots} slot(s)")
        code = 1
        try:
            async with relay:
                if self._stopping:
                    return 143
                self._mpirun = await asyncio.create_subprocess_exec(
                    *argv, env=env, stdin=asyncio.subprocess.DEVNULL
                )
                code = await self._mpirun.wait()
                code = code if code >= 0 else 128 - code
        finally:
            for link in self.workers.values():
                with contextlib.suppress(Exception):
                    await wire.send(link.writer, {"op": "done", "code": code})
            with contextlib.suppress(TimeoutError):  # each worker hangs up once it has stopped
                await asyncio.wait_for(
                    asyncio.gather(*(link.gone.wait() for link in self.workers.values())), timeout=10
                )
        say(f"mpi launcher: mpirun exited with {code}")
        return code

    # ---- workers ---------------------------------------------------------------------------------

    async def _on_worker(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            node_rank, problem = await asyncio.wait_for(
                wire.accept_worker(reader, writer, self.options.token), timeout=30
            )
        except (wire.HandshakeError, TimeoutError, ConnectionError):
            writer.close()
            return
        host = worker_host(node_rank)
        if not 0 < node_rank < self.options.nnodes or host in self.workers:
            writer.close()
            return
        if problem:
            self._failure = f"node rank {node_rank} cannot run its part: {problem}"
            self._changed.set()
            writer.close()
            return
        link = WorkerLink(node_rank, host, writer)
        await wire.send(writer, {"op": "welcome", "host": host})
        self.workers[host] = link
        say(f"mpi launcher: {host} joined from {writer.get_extra_info('peername')}")
        self._changed.set()
        try:
            while (message := await wire.receive(reader)) is not None:
                queue = link.sessions.get(int(message.get("id", 0)))
                if queue is not None:
                    queue.put_nowait(message)
        except asyncio.CancelledError:
            return  # the launcher is exiting (asyncio's streams log a handler that re-raises it)
        finally:
            link.gone.set()
        # Gone: its sessions end as a failed rsh would, which makes mpirun give up on that node.
        for session, queue in link.sessions.items():
            queue.put_nowait(wire.output(session, "stderr", f"{host}: the worker went away\n".encode()))
            queue.put_nowait({"op": "exit", "id": session, "code": 255})
        if self._mpirun is None:
            self.workers.pop(host, None)  # it may come back before mpirun starts
            self._changed.set()

    # ---- rsh agent relay -------------------------------------------------------------------------

    async def _on_rsh(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One rsh agent call (`rsh <host> <command>` from mpirun): runs the command on that worker
        and relays its output and exit status, for as long as the agent lives."""
        request = await wire.receive(reader)
        host = str((request or {}).get("host", ""))
        link = self.workers.get(host)
        if request is None or link is None:
            with contextlib.suppress(ConnectionError):
                await wire.send(writer, wire.output(0, "stderr", f"no node {host!r} in this job\n".encode()))
                await wire.send(writer, {"op": "exit", "id": 0, "code": 255})
            writer.close()
            return
        session = next(self._session_ids)
        queue: asyncio.Queue[wire.Message] = asyncio.Queue()
        link.sessions[session] = queue
        await wire.send(
            link.writer, {"op": "exec", "id": session, "command": str(request.get("command", ""))}
        )
        hangup = asyncio.ensure_future(reader.read())  # the agent sends nothing more: EOF = it died
        try:
            while True:
                got = asyncio.ensure_future(queue.get())
                await asyncio.wait({got, hangup}, return_when=asyncio.FIRST_COMPLETED)
                if not got.done():
                    got.cancel()
                    with contextlib.suppress(ConnectionError):
                        await wire.send(link.writer, {"op": "kill", "id": session})
                    return
                message = got.result()
                await wire.send(writer, message)
                if message.get("op") == "exit":
                    return
        except ConnectionError:
            with contextlib.suppress(ConnectionError):
                await wire.send(link.writer, {"op": "kill", "id": session})
        finally:
            hangup.cancel()
            link.sessions.pop(session, None)
            writer.close()
