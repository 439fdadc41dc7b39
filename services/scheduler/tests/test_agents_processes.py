"""Agents as real processes (`python -m suanli_trainer_agent`): a two-node torch job that really
rendezvous over gloo, and a kill -9 of an agent mid-job."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen

import pytest

from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.testing import NatsServer
from suanli_scheduler.main import SchedulerApp

from .conftest import agent_env
from .test_jobs import Stub, _alive, submit, wait_gpus, wait_status

pytestmark = pytest.mark.integration

GLOO = """
import os, torch, torch.distributed as dist
dist.init_process_group("gloo")
t = torch.tensor([dist.get_rank() + 1.0])
dist.all_reduce(t)
print(f"rank {dist.get_rank()} of {dist.get_world_size()} sum {t.item():g}", flush=True)
dist.destroy_process_group()
"""


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="torch is not installed (pip install torch)"
)
async def test_two_node_pytorch_job_rendezvous_over_gloo(
    scheduler: SchedulerApp,
    stub: Stub,
    nats_server: NatsServer,
    tmp_path: Path,
    agent_processes: Callable[[dict[str, str]], Popen[bytes]],
) -> None:
    script = tmp_path / "allreduce.py"
    script.write_text(GLOO)
    agent_processes(agent_env(nats_server.url, tmp_path, "node-a"))
    agent_processes(agent_env(nats_server.url, tmp_path, "node-b"))
    await wait_gpus(stub, 2)
    job = await submit(stub, f"python {script}", nodes=2, gpus_per_node=1, gpu_type="cpu")
    done = await wait_status(stub, job.id, pb.JOB_STATUS_SUCCEEDED, pb.JOB_STATUS_FAILED, timeout=90)
    assert done.status == pb.JOB_STATUS_SUCCEEDED, done.status_reason
    assert sorted(done.node_ids) == ["node-a", "node-b"]
    lines = await read_all_logs(scheduler, job.id)
    assert "rank 0 of 2 sum 3" in lines and "rank 1 of 2 sum 3" in lines, lines


async def read_all_logs(scheduler: SchedulerApp, job_id: str) -> list[str]:
    js = scheduler.broker.config.connection_state.stream
    sub = await js.subscribe(f"logs.job.{job_id}.>", ordered_consumer=True)
    lines = []
    try:
        while True:
            lines.append((await sub.next_msg(timeout=1)).data.decode())
    except Exception:
        pass
    await sub.unsubscribe()
    return lines


async def test_kill_9_of_an_agent_requeues_the_job_elsewhere(
    scheduler: SchedulerApp,
    stub: Stub,
    nats_server: NatsServer,
    tmp_path: Path,
    agent_processes: Callable[[dict[str, str]], Popen[bytes]],
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    first = agent_processes(agent_env(nats_server.url, tmp_path, "first"))
    await wait_gpus(stub, 1)
    # Each attempt notes which earlier attempts still live when it starts, then leaves its pid.
    command = (
        f"for f in {marks}/pid-*; do [ -f $f ] && kill -0 $(cat $f) 2>/dev/null && echo $f; done "
        f"> {marks}/overlap-$SUANLI_ATTEMPT; echo $$ > {marks}/pid-$SUANLI_ATTEMPT; "
        "echo attempt $SUANLI_ATTEMPT; sleep 3"
    )
    job = await submit(stub, command, ckpt_path="ckpt")
    await wait_status(stub, job.id, pb.JOB_STATUS_RUNNING)
    for _ in range(50):
        if (marks / "pid-1").exists() and (marks / "pid-1").read_text().strip():
            break
        await asyncio.sleep(0.1)
    first_job = int((marks / "pid-1").read_text())
    agent_processes(agent_env(nats_server.url, tmp_path, "second"))
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    for _ in range(50):
        if not _alive(first_job):
            break
        await asyncio.sleep(0.1)
    assert not _alive(first_job), "the killed agent's job outlived it"
    done = await wait_status(stub, job.id, pb.JOB_STATUS_SUCCEEDED, pb.JOB_STATUS_FAILED, timeout=45)
    assert done.status == pb.JOB_STATUS_SUCCEEDED and done.attempt == 2 and done.node_ids == ["second"]
    assert (marks / "overlap-2").read_text().strip() == ""  # attempt 1 was gone before 2 began
