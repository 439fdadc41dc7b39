"""How fast the scheduler places jobs.

Against a real nats-server and the real scheduler (its own process, SQLite, gRPC), started here,
it runs simulated agents: lightweight asyncio tasks in this process that speak the agent
protocol exactly as the trainer agent does (AgentHeartbeat on `agent.heartbeat.<node>` every
second, offers taken from `work.node.<node>` with the durable consumer `agent-<node>`, JobReports
preparing -> running -> succeeded on `work.report.<node>`), without running anything.

A job's latency is submit-to-running: from the moment its SubmitJob call was due to start (paced)
or started (serial, burst) to the moment its agent's `running` report was stored in JetStream.

Three phases, on the same cluster (`--agents` x `--slots` slots, each job 1 slot for `--run-s`):
- serial: `--serial` jobs, one at a time on an idle cluster (the latency of one placement alone).
- paced: `--jobs` jobs arriving open-loop at `--rate` per second (default 550, above the 500/s
  target): job n's SubmitJob starts at t0 + n / rate whether or not earlier calls have returned,
  and its latency counts from that due time, so a client or scheduler that falls behind shows it.
  Placement rate = jobs that ran / (last `running` - t0). This phase carries both targets: a
  cluster that keeps up with arrivals above 500/s places at > 500/s with p50 < 50 ms.
- burst: `--jobs` jobs queued as fast as the client can (`--concurrency` calls in flight, closed
  loop). Drain rate = jobs that ran / (last `running` - first submit); target > 500/s. Its
  latencies are printed for information only: with the whole queue submitted at once, the
  median job waits behind ~half the queue (Little's law), so they measure the queue, not the
  scheduler.

Per phase it also prints the share of the phase's wall time the scheduler's state lock was held
(its `suanli_scheduler_state_lock_held_seconds_total`, scraped before and after): every placement
pass, report batch and expiry runs under that lock, database round trips included, so near 100%
the scheduler is saturated by the lock, whatever its CPU shows.

    .venv/bin/python bench/scheduler.py [--agents 100] [--slots 20] [--jobs 2000] [--rate 550]
                                        [--concurrency 64] [--profile FILE]
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

import httpx
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from prometheus_client.parser import text_string_to_metric_families

from suanli_common.grpc import check_health, make_channel
from suanli_common.metrics import METRICS_PATH
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


def start_scheduler(
    home: Path, nats_url: str, port: int, metrics_port: int, profile: str | None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SUANLI_HOME": str(home),
        "SUANLI_NATS_URL": nats_url,
        "SUANLI_SCHEDULER_GRPC_PORT": str(port),
        "SUANLI_SCHEDULER_METRICS_PORT": str(metrics_port),
        "SUANLI_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
        "SUANLI_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else []), "-m", "suanli_scheduler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def submit(
    stub: scheduler_pb2_grpc.SchedulerServiceStub, clock: Clock, n: int, run_id: str, due: float | None = None
) -> str:
    """One SubmitJob; the job's clock starts at `due` (paced: when the call was due) or now."""
    spec = pb.JobSpec(name="bench", job_type=pb.JOB_TYPE_PYTORCH, command="true", nodes=1, gpus_per_node=1)
    started = time.perf_counter()
    job = await stub.SubmitJob(
        pb.SubmitJobRequest(owner_id="bench", client_request_id=f"{run_id}-{n}", spec=spec), timeout=60
    )
    clock.submitted[job.id] = started if due is None else due
    clock.accepted[job.id] = time.perf_counter()
    return str(job.id)


@dataclass
class PhaseResult:
    name: str
    jobs: int
    latencies: list[float]  # ms, submit-to-running, of the jobs that ran
    seconds: float  # first submit (or due time) to the last job running
    submitted_in: float  # first submit to the last SubmitJob returned
    lag_ms: float = 0.0  # paced: how late the client started the latest call, at worst
    lock_held: float = 0.0  # share of the phase the scheduler's state lock was held

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds > 0 else float("inf")


class LockMeter:
    """Reads how long the scheduler's state lock has been held, from its /metrics."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._client = httpx.AsyncClient(timeout=10)

    async def held_s(self) -> float:
        text = (await self._client.get(self._url)).raise_for_status().text
        for family in text_string_to_metric_families(text):
            if family.name == "suanli_scheduler_state_lock_held_seconds":
                return float(family.samples[0].value)
        raise RuntimeError("the scheduler exports no state lock counter")

    async def close(self) -> None:
        await self._client.aclose()


async def run_phase(
    stub: scheduler_pb2_grpc.SchedulerServiceStub,
    clock: Clock,
    lock: LockMeter,
    name: str,
    jobs: int,
    run_id: str,
    timeout: float,
    *,
    concurrency: int = 1,
    rate: float | None = None,
) -> PhaseResult:
    """Submits `jobs`: open-loop at `rate` per second, or closed-loop with `concurrency` calls in
    flight; waits for them to run."""
    for times in (clock.submitted, clock.accepted, clock.offered, clock.running):
        times.clear()
    clock.done.clear()
    clock.expected = jobs
    lag = 0.0
    held_before = await lock.held_s()
    t0 = time.perf_counter()
    if rate is not None:
        calls: list[asyncio.Task[str]] = []
        for n in range(jobs):
            due = t0 + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lag = max(lag, time.perf_counter() - due)
            calls.append(asyncio.create_task(submit(stub, clock, n, run_id, due)))
        await asyncio.gather(*calls)
    else:
        counter = iter(range(jobs))

        async def worker() -> None:
            for n in counter:
                await submit(stub, clock, n, run_id)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    submitted_in = time.perf_counter() - t0
    try:
        await asyncio.wait_for(clock.done.wait(), timeout)
    except TimeoutError:
        print(f"  only {len(clock.running)} of {jobs} jobs ran within {timeout:.0f} s", file=sys.stderr)
    lock_held = (await lock.held_s() - held_before) / (time.perf_counter() - t0)
    ran = [job for job in clock.submitted if job in clock.running and job in clock.offered]
    latencies = [(clock.running[j] - clock.submitted[j]) * 1000 for j in ran]
    last = max((clock.running[j] for j in ran), default=t0)
    if ran:
        parts = {
            "SubmitJob call": [clock.accepted[j] - clock.submitted[j] for j in ran],
            "accepted -> offer at the agent": [clock.offered[j] - clock.accepted[j] for j in ran],
            "offer -> running report stored": [clock.running[j] - clock.offered[j] for j in ran],
        }
        print(
            f"  {name}: "
            + "; ".join(f"{k} p50 {statistics.median(v) * 1000:.1f} ms" for k, v in parts.items())
        )
    return PhaseResult(name, jobs, latencies, last - t0, submitted_in, lag * 1000, lock_held)


def report(result: PhaseResult) -> None:
    if not result.latencies:
        print(f"{result.name:<8} no job ran")
        return
    lat = result.latencies
    print(
        f"{result.name:<8}{result.jobs:>7}{len(lat):>7}{statistics.median(lat):>10.1f}"
        f"{percentile(lat, 0.99):>10.1f}{max(lat):>10.1f}"
        f"{result.jobs / result.submitted_in:>11.0f}{result.rate:>12.0f}{result.lock_held:>8.0%}"
    )


def verdicts(paced: PhaseResult, burst: PhaseResult) -> list[str]:
    """MEETS / MISSES per target, with the phase and figure it is judged on."""
    lines = []
    p50 = statistics.median(paced.latencies) if paced.latencies else float("inf")
    ok = p50 < TARGET_P50_MS and len(paced.latencies) == paced.jobs
    lines.append(
        f"{'MEETS ' if ok else 'MISSES'} p50 submit-to-running < {TARGET_P50_MS:g} ms, "
        f"paced phase: {p50:.1f} ms"
    )
    for phase in (paced, burst):
        ok = phase.rate > TARGET_RATE and len(phase.latencies) == phase.jobs
        lines.append(
            f"{'MEETS ' if ok else 'MISSES'} > {TARGET_RATE:g} placements/s, {phase.name} phase: "
            f"{phase.rate:.0f}/s ({len(phase.latencies)} of {phase.jobs} ran)"
        )
    return lines


async def bench(args: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="suanli-bench-scheduler-", dir=args.home_dir))
    nats_server = start_nats_server(home / "nats")
    port, metrics_port = free_port(), free_port()
    scheduler = start_scheduler(home, nats_server.url, port, metrics_port, args.profile)
    lock = LockMeter(f"http://127.0.0.1:{metrics_port}{METRICS_PATH}")
    nc: NatsClient | None = None
    agents: list[SimulatedAgent] = []
    channel = make_channel(f"127.0.0.1:{port}", timeout=30)
    try:
        await asyncio.to_thread(wait_for_port, port, 60.0)
        await asyncio.to_thread(wait_for_port, metrics_port, 60.0)
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
        # Warms caches and code paths; not reported.
        await run_phase(stub, clock, lock, "warm", 20, f"{run_id}-warm", args.timeout)
        serial = await run_phase(stub, clock, lock, "serial", args.serial, f"{run_id}-serial", args.timeout)
        await asyncio.sleep(args.run_s + 1.5)  # slots given back
        paced = await run_phase(
            stub, clock, lock, "paced", args.jobs, f"{run_id}-paced", args.timeout, rate=args.rate
        )
        await asyncio.sleep(args.run_s + 1.5)
        burst = await run_phase(
            stub,
            clock,
            lock,
            "burst",
            args.jobs,
            f"{run_id}-burst",
            args.timeout,
            concurrency=args.concurrency,
        )
        print()
        header = f"{'phase':<8}{'jobs':>7}{'ran':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"
        print(f"{header}{'submits/s':>11}{'placed/s':>12}{'lock':>8}")
        for result in (serial, paced, burst):
            report(result)
        print(
            f"serial: one call at a time. paced: open loop at {args.rate:g}/s (client start lag at "
            f"worst {paced.lag_ms:.1f} ms; latency counts from each call's due time). burst: "
            f"{args.concurrency} calls in flight, latencies for information only."
        )
        print(
            "placed/s = jobs that ran / (last running report - first submit); submits/s = jobs / "
            "(last SubmitJob returned - first submit); latency = SubmitJob start -> running report stored; "
            "lock = share of the phase the scheduler's state lock was held."
        )
        for line in verdicts(paced, burst):
            print(line)
    finally:
        for agent in agents:
            await agent.stop()
        if nc is not None:
            await nc.close()
        await channel.close()
        await lock.close()
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
    parser.add_argument("--jobs", type=int, default=2000, help="jobs of the paced phase and of the burst")
    parser.add_argument("--rate", type=float, default=550.0, help="arrivals per second of the paced phase")
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
