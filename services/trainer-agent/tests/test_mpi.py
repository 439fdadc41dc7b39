"""`mpi` jobs without NATS: the launch commands, the hostfile and mpirun's command line, the
launcher/worker handshake over real sockets, and real launchers and workers (each under the agent's
shim, as the agent runs them) driving Open MPI's mpirun and orted on this machine."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from suanli_common.testing import free_port
from suanli_trainer_agent.mpi import wire
from suanli_trainer_agent.mpi.launcher import hostfile, mpirun_argv
from suanli_trainer_agent.mpi.worker import foreground
from suanli_trainer_agent.runner import JobProcess, Launch, command_argv

needs_mpirun = pytest.mark.skipif(
    shutil.which("mpirun") is None, reason="Open MPI (openmpi-bin) is not installed"
)

RANK_LINE = re.compile(r"rank (\d+) of (\d+) on node (\d+) via (\S+)")
REPORT = "echo rank $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE on node $NODE_RANK via $SUANLI_MPI_HOST"


def test_mpi_jobs_launch_on_rank_0_and_run_workers_elsewhere() -> None:
    launcher = command_argv(Launch("python train.py", "mpi", 0, 3, 2, "10.0.0.1", 29501))
    assert launcher[:4] == [sys.executable, "-m", "suanli_trainer_agent.mpi", "launch"]
    assert "--nnodes=3" in launcher and "--slots=2" in launcher and "--master-port=29501" in launcher
    assert launcher[-2:] == ["--", "python train.py"]
    worker = command_argv(Launch("python train.py", "mpi", 2, 3, 2, "10.0.0.1", 29501))
    assert worker[3:] == ["worker", "--node-rank=2", "--master-addr=10.0.0.1", "--master-port=29501"]


def test_hostfile_and_mpirun_command() -> None:
    assert hostfile("gpu-a", 4, 3) == "gpu-a slots=4\nsuanli-node-1 slots=4\nsuanli-node-2 slots=4\n"
    assert mpirun_argv("mpirun -np 2 ./hello", 8) == ["/bin/sh", "-c", "mpirun -np 2 ./hello"]
    assert mpirun_argv("/usr/bin/mpiexec ./hello", 8)[-1] == "/usr/bin/mpiexec ./hello"
    assert mpirun_argv("python train.py", 8) == ["mpirun", "-np", "8", "/bin/sh", "-c", "python train.py"]


def test_orted_runs_in_the_foreground_of_the_session() -> None:
    asked = ' orted --daemonize -mca ess "env" -mca orte_hnp_uri "1.0;tcp://10.0.0.1:4000"'
    assert foreground(asked) == 'exec orted -mca ess "env" -mca orte_hnp_uri "1.0;tcp://10.0.0.1:4000"'
    assert (
        foreground("PATH=/opt/bin:$PATH ; export PATH ; orted x")
        == "PATH=/opt/bin:$PATH ; export PATH ; orted x"
    )


async def _handshake(launcher_token: str, worker_token: str) -> tuple[object, object]:
    """Runs both sides over a real TCP connection: (launcher's outcome, worker's outcome)."""
    outcome: dict[str, object] = {}

    async def on_worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            outcome["launcher"] = await wire.accept_worker(reader, writer, launcher_token)
            await wire.send(writer, {"op": "welcome", "host": "suanli-node-1"})
        except wire.HandshakeError as exc:
            outcome["launcher"] = exc
        writer.close()

    server = await asyncio.start_server(on_worker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            worker: object = await wire.join_as_worker(reader, writer, worker_token, 1, "")
        except wire.HandshakeError as exc:
            worker = exc
        writer.close()
        for _ in range(50):
            if "launcher" in outcome:
                break
            await asyncio.sleep(0.02)
    return outcome.get("launcher"), worker


async def test_launcher_and_worker_prove_the_same_secret_to_each_other() -> None:
    assert await _handshake("lease_1", "lease_1") == ((1, ""), "suanli-node-1")
    # A launcher of another attempt on the same port: the worker does not take its commands...
    launcher, worker = await _handshake("lease_old", "lease_1")
    assert isinstance(worker, wire.HandshakeError) and "secret" in str(worker)
    assert launcher is None or isinstance(launcher, wire.HandshakeError)


async def test_a_worker_without_the_secret_cannot_join() -> None:
    # ...and a worker (or anyone) without this attempt's secret cannot join, even answering in turn.
    outcome: list[object] = []

    async def on_worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            outcome.append(await wire.accept_worker(reader, writer, "lease_1"))
        except wire.HandshakeError as exc:
            outcome.append(exc)
        writer.close()

    server = await asyncio.start_server(on_worker, "127.0.0.1", 0)
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        await wire.send(writer, {"op": "hello", "node_rank": 1, "nonce": "n"})
        challenge = await wire.receive(reader)
        assert challenge is not None and challenge["op"] == "challenge"
        await wire.send(
            writer, {"op": "join", "proof": wire.proof("guess", "worker", challenge["nonce"], "n")}
        )
        assert await wire.receive(reader) is None  # hung up, no welcome
        writer.close()
    assert len(outcome) == 1 and isinstance(outcome[0], wire.HandshakeError)


# ---- real launchers and workers, under the agent's shim --------------------------------------------


@dataclass
class Node:
    process: JobProcess
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Cluster:
    """The nodes of one mpi job on this machine, each its own process group like an agent's job."""

    cwd: Path
    port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)

    async def start(self, launch: Launch, path: str | None = None, token: str = "lease_test") -> Node:
        lines: list[str] = []

        async def on_line(stream: str, line: str) -> None:
            lines.append(line)

        env = {**os.environ, "NODE_RANK": str(launch.node_rank), wire.TOKEN_ENV: token}
        if path is not None:
            env["PATH"] = path
        process = await JobProcess.start(
            command_argv(launch), env=env, cwd=str(self.cwd), on_line=on_line, stop_grace_s=2
        )
        node = Node(process, lines)
        self.nodes.append(node)
        return node

    def launch(self, command: str, rank: int, nnodes: int = 2, slots: int = 2) -> Launch:
        return Launch(command, "mpi", rank, nnodes, slots, "127.0.0.1", self.port)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    running = Cluster(tmp_path)
    yield running
    for node in running.nodes:
        await node.process.stop(grace_s=2)


async def _wait(node: Node, timeout: float = 60) -> int:
    return await asyncio.wait_for(node.process.wait(), timeout=timeout)


@needs_mpirun
async def test_mpirun_starts_ranks_on_the_worker_through_its_connection(cluster: Cluster) -> None:
    worker = await cluster.start(cluster.launch("unused on workers", 1))
    await asyncio.sleep(0.5)  # the worker starts first and waits for the launcher, as it may
    launcher = await cluster.start(cluster.launch(REPORT, 0))
    assert await _wait(launcher) == 0, launcher.text()
    assert await _wait(worker) == 0, worker.text()

    ranks = sorted(m.groups() for line in launcher.lines if (m := RANK_LINE.fullmatch(line)))
    host = os.uname().nodename
    assert ranks == [
        ("0", "4", "0", host),
        ("1", "4", "0", host),
        ("2", "4", "1", "suanli-node-1"),  # NODE_RANK=1: the worker's environment, through its orted
        ("3", "4", "1", "suanli-node-1"),
    ], launcher.text()
    assert "mpi worker: suanli-node-1 starts `orted` for mpirun" in worker.lines, worker.text()
    assert "mpi worker: the launcher ended the job (mpirun exited with 0)" in worker.lines


@needs_mpirun
async def test_the_job_ends_with_mpiruns_status(cluster: Cluster) -> None:
    worker = await cluster.start(cluster.launch("", 1))
    rank = "$OMPI_COMM_WORLD_RANK"
    command = (
        f"mpirun -np 3 sh -c 'echo {rank}/$OMPI_COMM_WORLD_SIZE; test {rank} != 2 || {{ sleep 1; exit 3; }}'"
    )
    launcher = await cluster.start(cluster.launch(command, 0))
    assert await _wait(launcher) == 3, launcher.text()  # the user's own -np, over the hostfile
    # Rank 2 (on the worker) fails a second late: mpirun kills the ranks still running then, and
    # the others have printed by that time.
    assert {"0/3", "1/3", "2/3"} <= set(launcher.lines), launcher.text()
    assert "mpi launcher: mpirun exited with 3" in launcher.lines
    assert await _wait(worker) == 0  # the worker did its part; the job's status is rank 0's


@needs_mpirun
async def test_a_node_without_open_mpi_fails_the_job_and_says_why(cluster: Cluster, tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a PATH with the Python the agent gives jobs, but no Open MPI
    bare.mkdir()
    launcher = await cluster.start(cluster.launch("hostname", 0, nnodes=1), path=str(bare))
    assert await _wait(launcher, timeout=20) == 127
    assert any("`mpirun` is not on this node's PATH" in line for line in launcher.lines), launcher.text()

    launcher = await cluster.start(cluster.launch("hostname", 0))
    worker = await cluster.start(cluster.launch("", 1), path=str(bare))
    assert await _wait(worker, timeout=20) == 127
    assert await _wait(launcher, timeout=20) == 1
    assert any("node rank 1 cannot run its part: `orted`" in line for line in launcher.lines), launcher.text()


@needs_mpirun
async def test_stopping_the_worker_node_stops_its_ranks_and_fails_mpirun(cluster: Cluster) -> None:
    command = "echo pid $$ on $SUANLI_MPI_HOST; exec sleep 300"
    worker = await cluster.start(cluster.launch("", 1))
    launcher = await cluster.start(cluster.launch(command, 0))
    pids: list[int] = []
    for _ in range(300):
        pids = [int(line.split()[1]) for line in launcher.lines if line.endswith("on suanli-node-1")]
        if len(pids) == 2:
            break
        await asyncio.sleep(0.1)
    assert len(pids) == 2, launcher.text()
    await worker.process.stop(grace_s=2)  # the agent's cancel: the worker's whole process group
    for pid in pids:
        assert not _alive(pid), f"rank {pid} outlived its node's stop"
    assert await _wait(launcher) != 0, launcher.text()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
