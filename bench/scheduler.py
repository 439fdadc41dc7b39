"""How fast the scheduler places jobs.

Against a real nats-server and the real scheduler (its own process, SQLite, gRPC), started here,
it runs simulated agents: lightweight asyncio tasks in this process that speak the agent
protocol exactly as the trainer agent does (AgentHeartbeat on `agent.heartbeat.<node>` every
second, offers taken from `work.node.<node>` with the durable consumer `agent-<node>`, JobReports
preparing -> running -> succeeded on `work.report.<node>`), without running anything.

Two phases:
- serial: jobs submitted one at a time on an idle cluster (the latency of one placement);
- burst: `--jobs` submitted at once (`--concurrency` calls in flight), the queue the scheduler drains.

For each it prints p50/p99 submit-to-running latency (from the SubmitJob call to the agent's
`running` report stored in JetStream) and placements per second (burst: jobs / the time from the
first submit to the last job running). Targets: p50 under 50 ms, over 500 placements/s.

    .venv/bin/python bench/scheduler.py [--agents 100] [--slots 20] [--jobs 2000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from suanli_common.grpc import check_health, make_channel
from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.proto.suanli.v1 import scheduler_pb2_grpc
from suanli_common.testing import free_port, start_nats_server, wait_for_port

TARGET_P50_MS = 50.0
TARGET_RATE = 500.0
GPU_TYPE = "sim"
HEARTBEAT_S = 1.0
TERMINAL = {pb.JOB_STATUS_SUCCEEDED, pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED, pb.JOB_STATUS_TIMED_OUT}


@dataclass
class Clock:
    """When each job was submitted and when its agent reported it running (perf_counter seconds)."""

    submitted: dict[str, float] = field(default_factory=dict)
    accepted: dict[str, float] = field(default_factory=dict)  # SubmitJob returned
    offered: dict[str, float] = field(default_factory=dict)  # the offer reached the agent
    running: dict[str, float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    def ran(self, job_id: str) -> None:
        self.running.setdefault(job_id, time.perf_counter())
        if self.expected and len(self.running) >= self.expected:
            self.done.set()


@dataclass
class SimAttempt:
    offer: pb.WorkOffer
    phase: int
    finished_at: float | None = None


class SimulatedAgent:
    """One node: beats, takes offers, reports preparing and running at once, succeeds after `run_s`."""

    def __init__(
        self, node_id: str, address: str, slots: int, js: JetStreamContext, nc: NatsClient, clock: Clock
    ) -> None:
        self.node_id = node_id
        # Each simulated node is its own machine, as in a real cluster: rendezvous ports are
        # allocated per address, and 100 nodes sharing one address would share one port range.
        self.address = address
        self.slots = slots
        self._js = js
        self._nc = nc
        self._clock = clock
        self.run_s = 0.5
        self.instance_id = f"sim-{node_id}-{os.getpid()}"
        self.attempts: dict[str, SimAttempt] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._js.subscribe(
            f"work.node.{self.node_id}",
            durable=f"agent-{self.node_id}",
            stream="WORK",
            cb=self._on_command,
            manual_ack=True,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=256),
        )
        self._spawn(self._beat_forever())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def heartbeat(self) -> pb.AgentHeartbeat:
        now = time.monotonic()
        for job_id, a in list(self.attempts.items()):
            if a.finished_at is not None and now - a.finished_at > 10:
                del self.attempts[job_id]
        beat = pb.AgentHeartbeat(
            node_id=self.node_id,
            address=self.address,
            port_range_start=29500,
            port_range_end=29999,
            instance_id=self.instance_id,
        )
        used = sum(a.offer.spec.gpus_per_node for a in self.attempts.values() if a.phase not in TERMINAL)
        beat.gpus.add(node_id=self.node_id, gpu_type=GPU_TYPE, total=self.slots, used=used)
        for a in self.attempts.values():
            beat.attempts.add(
                job_id=a.offer.job_id,
                attempt=a.offer.attempt,
                lease_id=a.offer.lease_id,
                phase=a.phase,  # type: ignore[arg-type]
                gpu_type=a.offer.gpu_type,
                slots=a.offer.spec.gpus_per_node,
            )
        beat.sent_at.GetCurrentTime()
        return beat

    async def _beat_forever(self) -> None:
        while True:
            await self._nc.publish(f"agent.heartbeat.{self.node_id}", self.heartbeat().SerializeToString())
            await asyncio.sleep(HEARTBEAT_S)

    async def _report(self, attempt: SimAttempt) -> None:
        offer = attempt.offer
        report = pb.JobReport(
            node_id=self.node_id,
            job_id=offer.job_id,
            attempt=offer.attempt,
            lease_id=offer.lease_id,
            phase=attempt.phase,  # type: ignore[arg-type]
            progress=1.0,
        )
        report.at.GetCurrentTime()
        await self._js.publish(f"work.report.{self.node_id}", report.SerializeToString(), stream="WORK")

    async def _on_command(self, msg: Msg) -> None:
        command = pb.NodeCommand.FromString(msg.data)
        kind = command.WhichOneof("command")
        if kind == "offer":
            offer = command.offer
            held = self.attempts.get(offer.job_id)
            if held is None or held.offer.lease_id != offer.lease_id:
                self._clock.offered.setdefault(offer.job_id, time.perf_counter())
                attempt = SimAttempt(offer, pb.JOB_STATUS_PREPARING)
                self.attempts[offer.job_id] = attempt
                self._spawn(self._run(attempt))
        elif kind == "stop":
            held = self.attempts.get(command.stop.job_id)
            if held is not None and held.phase not in TERMINAL:
                held.phase, held.finished_at = pb.JOB_STATUS_CANCELLED, time.monotonic()
                await self._report(held)
        await msg.ack()

    async def _run(self, attempt: SimAttempt) -> None:
        await self._report(attempt)  # preparing: the acknowledgement of the offer
        attempt.phase = pb.JOB_STATUS_RUNNING
        await self._report(attempt)
        self._clock.ran(attempt.offer.job_id)
        await asyncio.sleep(self.run_s)
        if attempt.phase == pb.JOB_STATUS_RUNNING:
            attempt.phase, attempt.finished_at = pb.JOB_STATUS_SUCCEEDED, time.monotonic()
            await self._report(attempt)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_scheduler(home: Path, nats_url: str, port: int, profile: str | None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SUANLI_HOME": str(home),
        "SUANLI_NATS_URL": nats_url,
        "SUANLI_SCHEDULER_GRPC_PORT": str(port),
        "SUANLI_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
        "SUANLI_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else []), "-m", "suanli_scheduler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def submit(stub: scheduler_pb2_grpc.SchedulerServiceStub, clock: Clock, n: int, run_id: str) -> str:
    spec = pb.JobSpec(name="bench", job_type=pb.JOB_TYPE_PYTORCH, command="true", nodes=1, gpus_per_node=1)
    started = time.perf_counter()
    job = await stub.SubmitJob(
        pb.SubmitJobRequest(owner_id="bench", client_request_id=f"{run_id}-{n}", spec=spec), timeout=60
    )
    clock.submitted[job.id] = started
    clock.accepted[job.id] = time.perf_counter()
    return str(job.id)


async def run_phase(
    stub: scheduler_pb2_grpc.SchedulerServiceStub,
    clock: Clock,
    jobs: int,
    concurrency: int,
    run_id: str,
    timeout: float,
) -> tuple[list[float], float, float]:
    """Submits `jobs` with `concurrency` calls in flight; returns (latencies ms, seconds, submit s)."""
    for times in (clock.submitted, clock.accepted, clock.offered, clock.running):
        times.clear()
    clock.done.clear()
    clock.expected = jobs
    counter = iter(range(jobs))
    t0 = time.perf_counter()

    async def worker() -> None:
        for n in counter:
            await submit(stub, clock, n, run_id)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    submitted_in = time.perf_counter() - t0
    try:
        await asyncio.wait_for(clock.done.wait(), timeout)
    except TimeoutError:
        print(f"  only {len(clock.running)} of {jobs} jobs ran within {timeout:.0f} s", file=sys.stderr)
    ran = [job for job in clock.submitted if job in clock.running and job in clock.offered]
    latencies = [(clock.running[j] - clock.submitted[j]) * 1000 for j in ran]
    last = max((clock.running[j] for j in ran), default=t0)
    if ran:
        parts = {
            "SubmitJob call": [clock.accepted[j] - clock.submitted[j] for j in ran],
            "accepted -> offer at the agent": [clock.offered[j] - clock.accepted[j] for j in ran],
            "offer -> running report stored": [clock.running[j] - clock.offered[j] for j in ran],
        }
        print("  " + "; ".join(f"{k} p50 {statistics.median(v) * 1000:.1f} ms" for k, v in parts.items()))
    return latencies, last - t0, submitted_in


def report(name: str, latencies: list[float], jobs: int, seconds: float, submitted_in: float) -> None:
    if not latencies:
        print(f"{name:<8} no job ran")
        return
    rate = len(latencies) / seconds if seconds > 0 else float("inf")
    print(
        f"{name:<8}{jobs:>7}{len(latencies):>7}{statistics.median(latencies):>10.1f}"
        f"{percentile(latencies, 0.99):>10.1f}{max(latencies):>10.1f}"
        f"{jobs / submitted_in:>11.0f}{rate:>12.0f}"
    )


async def bench(args: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="suanli-bench-scheduler-", dir=args.home_dir))
    nats_server = start_nats_server(home / "nats")
    port = free_port()
    scheduler = start_scheduler(home, nats_server.url, port, args.profile)
    nc: NatsClient | None = None
    agents: list[SimulatedAgent] = []
    channel = make_channel(f"127.0.0.1:{port}", timeout=30)
    try:
        await asyncio.to_thread(wait_for_port, port, 60.0)
        if not await check_health(channel, timeout=10):
            raise RuntimeError("the scheduler is not serving")
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)

        nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1)
        js = nc.jetstream()
        clock = Clock()
        agents = [
            SimulatedAgent(f"sim-{i:03d}", f"10.0.{i // 250}.{i % 250 + 1}", args.slots, js, nc, clock)
            for i in range(args.agents)
        ]
        for agent in agents:
            agent.run_s = args.run_s
        await asyncio.gather(*(agent.start() for agent in agents))
        for _ in range(100):
            gpus = (await stub.ListGpus(pb.ListGpusRequest())).gpus
            if len(gpus) >= args.agents:
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"only {len(gpus)} of {args.agents} agents registered")

        run_id = f"r{os.getpid()}"
        print(f"agents: {args.agents} x {args.slots} {GPU_TYPE} slots; each job: 1 slot for {args.run_s:g} s")
        header = f"{'phase':<8}{'jobs':>7}{'ran':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"
        print(f"{header}{'submits/s':>11}{'placed/s':>12}")
        await run_phase(stub, clock, 20, 1, f"{run_id}-warm", args.timeout)  # warm caches and paths
        serial, seconds, submitted_in = await run_phase(
            stub, clock, args.serial, 1, f"{run_id}-serial", args.timeout
        )
        report("serial", serial, args.serial, seconds, submitted_in)
        await asyncio.sleep(args.run_s + 1.5)  # slots given back
        burst, seconds, submitted_in = await run_phase(
            stub, clock, args.jobs, args.concurrency, f"{run_id}-burst", args.timeout
        )
        report("burst", burst, args.jobs, seconds, submitted_in)
        if burst:
            p50 = statistics.median(burst)
            rate = len(burst) / seconds
            print(
                f"burst p50 {p50:.1f} ms ({'meets' if p50 < TARGET_P50_MS else 'MISSES'} the "
                f"{TARGET_P50_MS:g} ms target); {rate:.0f} placements/s "
                f"({'meets' if rate > TARGET_RATE else 'MISSES'} the {TARGET_RATE:g}/s target)"
            )
    finally:
        for agent in agents:
            await agent.stop()
        if nc is not None:
            await nc.close()
        await channel.close()
        scheduler.terminate()
        scheduler.wait(timeout=30)
        nats_server.process.terminate()
        nats_server.process.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=100, help="simulated nodes")
    parser.add_argument("--slots", type=int, default=20, help="slots per node")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs of the burst")
    parser.add_argument("--concurrency", type=int, default=64, help="SubmitJob calls in flight in the burst")
    parser.add_argument("--serial", type=int, default=200, help="jobs of the serial phase")
    parser.add_argument("--run-s", type=float, default=0.5, help="how long each simulated job runs")
    parser.add_argument(
        "--home-dir", default=None, help="where SQLite and the NATS store live (/dev/shm: no fsync)"
    )
    parser.add_argument("--profile", default=None, help="write the scheduler's cProfile stats here")
    parser.add_argument("--timeout", type=float, default=120.0, help="wait for the jobs to run")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
