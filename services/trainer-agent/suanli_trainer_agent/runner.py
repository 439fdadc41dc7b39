"""Runs one job's command as a process group the agent can stop, streaming its output by line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from suanli_common.logging import get_logger

log = get_logger(__name__)

LineSink = Callable[[str, str], Awaitable[None]]  # (stream name, line)


@dataclass(frozen=True, slots=True)
class Launch:
    """What the job's rank on this node needs to know to start."""

    command: str
    job_type: str
    node_rank: int
    nnodes: int
    slots: int
    master_addr: str
    master_port: int


def is_python(token: str) -> bool:
    name = os.path.basename(token)
    return name == "python" or (name.startswith("python3") and name[7:].replace(".", "").isdigit())


def command_argv(launch: Launch) -> list[str]:
    """A `pytorch` job's `python ...` or `torchrun ...` command runs under torchrun (one process per
    slot, static rendezvous at MASTER_ADDR:MASTER_PORT); an `mpi` job's node rank 0 runs mpirun
    over the job's nodes and the others the workers that start its daemons (see the mpi package);
    anything else runs through /bin/sh."""
    if launch.job_type == "mpi":
        mpi = [sys.executable, "-m", "suanli_trainer_agent.mpi"]
        if launch.node_rank == 0:
            sizes = [f"--nnodes={launch.nnodes}", f"--slots={launch.slots}"]
            return [*mpi, "launch", *sizes, f"--master-port={launch.master_port}", "--", launch.command]
        rendezvous = [f"--master-addr={launch.master_addr}", f"--master-port={launch.master_port}"]
        return [*mpi, "worker", f"--node-rank={launch.node_rank}", *rendezvous]
    tokens = shlex.split(launch.command)
    if launch.job_type == "pytorch" and tokens and (is_python(tokens[0]) or tokens[0] == "torchrun"):
        options = [
            f"--nnodes={launch.nnodes}",
            f"--node_rank={launch.node_rank}",
            f"--nproc_per_node={launch.slots}",
            f"--master_addr={launch.master_addr}",
            f"--master_port={launch.master_port}",
        ]
        if tokens[0] == "torchrun":
            return [tokens[0], *options, *tokens[1:]]
        return [tokens[0], "-m", "torch.distributed.run", *options, *tokens[1:]]
    return ["/bin/sh", "-c", launch.command]


class JobProcess:
    """A job's process group, led by the shim (which dies with the agent)."""

    def __init__(self, process: asyncio.subprocess.Process, pumps: list[asyncio.Task[None]]) -> None:
        self._process = process
        self._pumps = pumps

    @property
    def pid(self) -> int:
        return self._process.pid

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        on_line: LineSink,
        stop_grace_s: float = 10.0,
    ) -> JobProcess:
        full_env = {**env, "SUANLI_AGENT_PID": str(os.getpid()), "SUANLI_STOP_GRACE_S": str(stop_grace_s)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "suanli_trainer_agent.shim",
            *argv,
            env=full_env,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, so a stop reaches every descendant
            limit=1 << 20,
        )
        assert process.stdout is not None and process.stderr is not None
        pumps = [
            asyncio.create_task(_pump(process.stdout, "stdout", on_line)),
            asyncio.create_task(_pump(process.stderr, "stderr", on_line)),
        ]
        return cls(process, pumps)

    async def wait(self) -> int:
        code = await self._process.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*self._pumps), timeout=5)
        return code

    async def stop(self, grace_s: float) -> None:
        """SIGTERM to the whole group, SIGKILL after the grace period."""
        if self._process.returncode is not None:
            _kill_group(self._process.pid, signal.SIGKILL)  # leftovers of a finished leader
            return
        _kill_group(self._process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process.wait(), timeout=grace_s)
        _kill_group(self._process.pid, signal.SIGKILL)
        await self._process.wait()


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _pump(stream: asyncio.StreamReader, name: str, on_line: LineSink) -> None:
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line over the limit: take what there is
            raw = await stream.read(1 << 20)
        if not raw:
            return
        try:
            await on_line(name, raw.decode(errors="replace").rstrip("\n"))
        except Exception:
            log.warning("could not forward a log line", exc_info=True)
