"""A fine-tune killed with its agent (kill -9 of a real agent process) resumes from its last
checkpoint on another agent and finishes with the same total step count.

Both agents share SUANLI_HOME, so they share the volumes folder: the production analogue is
shared storage, where the second node finds the checkpoints the first one wrote."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

import pytest
from nats import errors as nats_errors
from nats.aio.msg import Msg

from suanli_catalog.seed import TINY, build_once
from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.testing import NatsServer, free_port
from suanli_scheduler.main import SchedulerApp, start_scheduler
from suanli_scheduler.settings import SchedulerSettings
from suanli_trainer_agent.protocol import ATTEMPT_HEADER, KIND_HEADER

from .conftest import FAST, agent_env
from .test_jobs import Stub, wait_for, wait_gpus, wait_status

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        any(importlib.util.find_spec(m) is None for m in ("torch", "transformers", "peft")),
        reason="the fine-tune runner needs torch, transformers and peft (suanli-trainer-agent[finetune])",
    ),
]

REPO = Path(__file__).resolve().parents[3]
IDENTITY = REPO / "examples" / "identity.jsonl"  # 20 examples
SEED_MODELS_CACHE = Path("/tmp/suanli-test-cache/seed-models")  # shared with the other suites

# 20 examples in batches of 2: 10 steps an epoch, 30 in all, a checkpoint every 5. The agent is
# killed once the checkpoint of KILL_AFTER is out, so attempt 1 ends after it, before the next planned one.
RUN = {"n_epochs": 3, "batch_size": 2, "save_every_steps": 5, "seed": 7}
PLANNED_STEPS = 30
KILL_AFTER = 10


@pytest.fixture
async def scheduler(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[SchedulerApp]:
    """This module's scheduler: a lost agent is noticed after 15 missed beats of 0.2 s (3 s), a
    little more slack than the shared fixture's 2 s, since the runner keeps both cores busy."""
    settings = SchedulerSettings(
        home=tmp_path,
        nats_url=nats_server.url,
        scheduler_grpc_port=free_port(),
        runtime_grace_s=5.0,
        **{**FAST, "missed_heartbeats": 15},
    )
    app = await start_scheduler(settings)
    yield app
    await app.stop()


@pytest.fixture
async def tiny_model() -> Path:
    """The tiny Qwen2 seed model (random weights), built once into the shared test cache."""
    return await build_once(TINY, SEED_MODELS_CACHE / TINY.folder_name, timeout=600)


@dataclass(frozen=True, slots=True)
class Record:
    """One METRICS message: its kind (metrics | checkpoint | result), attempt, node and body."""

    kind: str
    attempt: int
    node_id: str
    body: dict[str, Any]

    @classmethod
    def of(cls, msg: Msg) -> Record:
        headers = msg.headers or {}
        return cls(
            headers.get(KIND_HEADER, ""),
            int(headers.get(ATTEMPT_HEADER, "0")),
            msg.subject.rsplit(".", 1)[1],
            json.loads(msg.data),
        )


async def test_a_fine_tune_killed_with_its_agent_resumes_elsewhere_to_the_same_total(
    scheduler: SchedulerApp,
    stub: Stub,
    nats_server: NatsServer,
    tmp_path: Path,
    tiny_model: Path,
    agent_processes: Callable[[dict[str, str]], Popen[bytes]],
) -> None:
    agents = {
        node: agent_processes(agent_env(nats_server.url, tmp_path, node)) for node in ("node-a", "node-b")
    }
    await wait_gpus(stub, 2)
    spec = pb.JobSpec(
        name="fine-tune tiny (resume)",
        job_type=pb.JOB_TYPE_FINE_TUNE,
        command="python -m suanli_trainer_agent.finetune",
        nodes=1,
        gpus_per_node=1,
        gpu_type="cpu",
        ckpt_path="checkpoints",
        model_save_path="output",
        model_path=str(tiny_model),
        dataset_path=str(IDENTITY),
        env={"SUANLI_FINETUNE_CONFIG": json.dumps(RUN)},
        fine_tune=pb.FineTuneSpec(base_model=TINY.id, suffix="resume"),
    )
    job = await stub.SubmitJob(pb.SubmitJobRequest(owner_id="user_1", spec=spec))

    # Kill -9 the agent that runs attempt 1 as soon as its checkpoint at KILL_AFTER is out.
    checkpoint = await first_record(
        scheduler, job.id, lambda r: r.kind == "checkpoint" and r.body["step"] >= KILL_AFTER
    )
    assert checkpoint.attempt == 1 and checkpoint.body["step"] == KILL_AFTER
    running = await stub.GetJob(pb.GetJobRequest(job_id=job.id))
    assert running.status == pb.JOB_STATUS_RUNNING and running.node_ids == [checkpoint.node_id]
    (killed,) = running.node_ids
    (survivor,) = set(agents) - {killed}
    assert len(attempt_processes(job.id, attempt=1)) >= 2, "attempt 1 runs no shim and runner"
    os.kill(agents[killed].pid, signal.SIGKILL)
    agents[killed].wait()
    # Its job dies with it: the shim stops the job's process group when its agent dies, TERM and
    # KILL after the agents' 2 s grace period.
    await wait_until(lambda: not attempt_processes(job.id, attempt=1), timeout=10)

    done = await wait_status(stub, job.id, pb.JOB_STATUS_SUCCEEDED, pb.JOB_STATUS_FAILED, timeout=150)
    assert done.status == pb.JOB_STATUS_SUCCEEDED, done.status_reason
    assert (done.attempt, list(done.node_ids)) == (2, [survivor])
    assert not attempt_processes(job.id, attempt=1)

    records = [Record.of(msg) for msg in await read_stream(scheduler, f"metrics.job.{job.id}.>")]
    first = [r for r in records if r.attempt == 1]
    second = [r for r in records if r.attempt == 2]
    assert {r.node_id for r in first} == {killed} and {r.node_id for r in second} == {survivor}
    saved = [r.body["step"] for r in first if r.kind == "checkpoint"]
    last_saved = max(saved)
    steps_1 = [r.body["step"] for r in first if r.kind == "metrics"]
    steps_2 = [r.body["step"] for r in second if r.kind == "metrics"]
    assert saved == list(range(5, KILL_AFTER + 1, 5))
    assert steps_1[:last_saved] == list(range(1, last_saved + 1)) and max(steps_1) < PLANNED_STEPS
    assert {r.body["total_steps"] for r in records if r.kind == "metrics"} == {PLANNED_STEPS}
    assert not [r for r in first if r.kind == "result"]

    # A heartbeat may end the job a moment before the final report brings the result.
    done = await wait_for(lambda: stub.GetJob(pb.GetJobRequest(job_id=job.id)), lambda j: bool(j.result_json))
    result = json.loads(done.result_json)
    assert result["total_steps"] == PLANNED_STEPS == result["hyperparameters"]["total_steps"]
    (reported,) = [r.body for r in second if r.kind == "result"]
    assert reported["total_steps"] == PLANNED_STEPS

    logs = await read_stream(scheduler, f"logs.job.{job.id}.>")
    resumed = [m.data.decode() for m in logs if "resuming from" in m.data.decode()]
    assert len(resumed) == 1 and logs_attempt(logs, resumed[0]) == 2, resumed
    # The shim's TERM lets the runner save the step it is on, a checkpoint its dead agent never
    # reported: attempt 2 takes up after that one or after the last reported, and runs each
    # remaining step once, to the planned total.
    resumed_at = int(resumed[0].rsplit("(step ", 1)[1].split()[0])
    assert last_saved <= resumed_at < PLANNED_STEPS, resumed[0]
    checkpoints = tmp_path / "volumes" / job.id / "checkpoints"
    assert f"resuming from {checkpoints}/checkpoint-{resumed_at:08d}" in resumed[0]
    assert resumed[0].endswith(f"(step {resumed_at} of {PLANNED_STEPS})")
    assert steps_2 == list(range(resumed_at + 1, PLANNED_STEPS + 1))
    assert (tmp_path / "volumes" / job.id / "output" / "merged" / "config.json").is_file()


async def first_record(
    app: SchedulerApp, job_id: str, wanted: Callable[[Record], bool], timeout: float = 120
) -> Record:
    """The first METRICS record of the job that is `wanted`, read as the runner reports."""
    js = app.broker.config.connection_state.stream
    sub = await js.subscribe(f"metrics.job.{job_id}.>", ordered_consumer=True)
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(TimeoutError, nats_errors.TimeoutError):
                record = Record.of(await sub.next_msg(timeout=1))
                if wanted(record):
                    return record
    finally:
        await sub.unsubscribe()
    raise AssertionError(f"no such METRICS record for {job_id} in {timeout:g} s")


async def read_stream(app: SchedulerApp, subject: str) -> list[Msg]:
    """Every message on `subject` so far, in order (the stream is idle for a second at the end)."""
    js = app.broker.config.connection_state.stream
    sub = await js.subscribe(subject, ordered_consumer=True)
    found = []
    with contextlib.suppress(TimeoutError, nats_errors.TimeoutError):
        while True:
            found.append(await sub.next_msg(timeout=1))
    await sub.unsubscribe()
    return found


def logs_attempt(logs: list[Msg], line: str) -> int:
    (msg,) = [m for m in logs if m.data.decode() == line]
    return int((msg.headers or {}).get(ATTEMPT_HEADER, "0"))


def attempt_processes(job_id: str, attempt: int) -> set[int]:
    """Pids of this job's attempt running the fine-tune (the shim, its shell and the runner), found by
    their command line and env in /proc (zombies, reaped any moment now, count as gone)."""
    wanted = {f"SUANLI_JOB_ID={job_id}".encode(), f"SUANLI_ATTEMPT={attempt}".encode()}
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"suanli_trainer_agent.finetune" not in cmdline:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and wanted <= set((entry / "environ").read_bytes().split(b"\0")):
                found.add(int(entry.name))
        except OSError:  # gone while we looked
            continue
    return found


async def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still not so after {timeout:g} s")
        await asyncio.sleep(0.1)
