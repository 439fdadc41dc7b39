"""The agent's parts without NATS: slot declarations, launch commands, the process group, staging,
machine lines and result files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from suanli_trainer_agent.agent import RESULT_LIMIT, read_result
from suanli_trainer_agent.discovery import SlotPool, parse_slots
from suanli_trainer_agent.protocol import MachineLine, machine_line, metrics_subject
from suanli_trainer_agent.runner import JobProcess, Launch, command_argv
from suanli_trainer_agent.staging import StagingError, redact, stage, url_file_name


def test_declared_slots() -> None:
    assert parse_slots("cpu:2") == [SlotPool("cpu", 2)]
    assert parse_slots("A100-80G:4, cpu") == [SlotPool("A100-80G", 4), SlotPool("cpu", 1)]
    with pytest.raises(ValueError):
        parse_slots("cpu:0")


def test_pytorch_python_commands_run_under_torchrun() -> None:
    launch = Launch("python train.py --lr 1", "pytorch", 1, 2, 4, "10.0.0.1", 29501)
    argv = command_argv(launch)
    assert argv[:3] == ["python", "-m", "torch.distributed.run"]
    assert "--node_rank=1" in argv and "--nproc_per_node=4" in argv and argv[-3:] == ["train.py", "--lr", "1"]
    assert command_argv(Launch("echo hi", "pytorch", 0, 1, 1, "a", 1)) == ["/bin/sh", "-c", "echo hi"]


async def test_stop_reaches_every_process_of_the_group(tmp_path: Path) -> None:
    lines: list[str] = []

    async def on_line(stream: str, line: str) -> None:
        lines.append(line)

    process = await JobProcess.start(
        ["/bin/sh", "-c", "sleep 300 & echo $!; wait"],
        env=dict(os.environ),
        cwd=str(tmp_path),
        on_line=on_line,
    )
    for _ in range(50):
        if lines:
            break
        await asyncio.sleep(0.1)
    grandchild = int(lines[0])
    await process.stop(grace_s=2)
    await asyncio.sleep(0.2)
    assert not _alive(grandchild)


# A job that shrugs off SIGTERM (as a fine-tune runner does while it finishes its step) and
# writes nothing more, run through a shell under the shim by an "agent" that then sleeps.
_JOB = """
import os, pathlib, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: None)
pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))
time.sleep(600)
"""
_AGENT = """
import os, subprocess, sys, time
env = {**os.environ, "SUANLI_AGENT_PID": str(os.getpid()), "SUANLI_STOP_GRACE_S": "1"}
job = f"{sys.executable} {sys.argv[1]} {sys.argv[2]}"
shim = [sys.executable, "-m", "suanli_trainer_agent.shim", "/bin/sh", "-c", job]
subprocess.Popen(shim, env=env, start_new_session=True)
time.sleep(600)
"""


async def test_a_killed_agents_job_is_killed_after_the_grace_even_under_a_shell(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(_JOB)
    pidfile = tmp_path / "job.pid"
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _AGENT, str(tmp_path / "job.py"), str(pidfile)
    )
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        await asyncio.sleep(0.1)
    job = int(pidfile.read_text())
    agent.kill()
    await agent.wait()
    # The shell dies at the shim's TERM at once; the shim outlives it to send the KILL after 1 s.
    for _ in range(50):
        if not _alive(job):
            break
        await asyncio.sleep(0.1)
    alive = _alive(job)
    if alive:
        os.kill(job, signal.SIGKILL)
    assert not alive, "the job outlived its killed agent past the grace period"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"  # a zombie waits for init to reap it: dead
    except OSError:
        return False


async def test_staging_copies_inputs_with_progress_and_refuses_escapes(tmp_path: Path) -> None:
    source = tmp_path / "data.jsonl"
    source.write_text("{}\n")
    seen: list[float] = []

    async def progress(value: float, message: str) -> None:
        seen.append(value)

    paths = await stage(
        tmp_path / "vol",
        ckpt_path="ckpt",
        model_save_path="out",
        model_path="",
        dataset_path=str(source),
        volume_gb=0,
        on_progress=progress,
    )
    assert await asyncio.to_thread(Path(paths.dataset).read_text) == "{}\n" and seen[-1] == 1.0
    with pytest.raises(StagingError):
        await stage(
            tmp_path / "vol2",
            ckpt_path="../x",
            model_save_path="",
            model_path="",
            dataset_path="",
            volume_gb=0,
            on_progress=progress,
        )


async def test_file_urls_stage_like_local_paths_and_other_schemes_are_refused(tmp_path: Path) -> None:
    model = tmp_path / "my model"
    model.mkdir()
    (model / "config.json").write_text("{}")

    async def progress(value: float, message: str) -> None:
        pass

    paths = await stage(
        tmp_path / "vol",
        ckpt_path="",
        model_save_path="",
        model_path=model.as_uri(),  # file:///.../my%20model
        dataset_path="",
        volume_gb=0,
        on_progress=progress,
    )
    assert Path(paths.model) == tmp_path / "vol" / "inputs" / "model" / "my model"
    assert (Path(paths.model) / "config.json").is_file()
    with pytest.raises(StagingError, match="only file://, http:// and https://"):
        await stage(
            tmp_path / "vol",
            ckpt_path="",
            model_save_path="",
            model_path="",
            dataset_path="s3://bucket/data.jsonl",
            volume_gb=0,
            on_progress=progress,
        )


def test_url_file_names_leave_the_query_out() -> None:
    assert url_file_name("https://s3.local/bucket/ds/train.jsonl?X-Amz-Signature=abc") == "train.jsonl"
    assert url_file_name("http://host/a/my%20file.bin") == "my file.bin"
    assert url_file_name("https://host/?download=1") == "data"
    assert url_file_name("https://host/a/..") == "data"
    assert url_file_name("https://host/a/x%2F..") == "data"
    assert redact("https://user:pw@host:9000/b/k?sig=1#f") == "https://host:9000/b/k"


def test_machine_lines() -> None:
    assert machine_line('SUANLI_METRICS {"step": 3, "loss": 1.5}') == MachineLine(
        "metrics", '{"step": 3, "loss": 1.5}'
    )
    assert machine_line('SUANLI_CHECKPOINT {"step": 3}') == MachineLine("checkpoint", '{"step": 3}')
    assert machine_line('SUANLI_RESULT {"a": null} ') == MachineLine("result", '{"a": null}')
    for line in (
        "SUANLI_METRICS {oops",
        "SUANLI_RESULT [1]",
        "SUANLI_METRICS",
        "step 1 loss 2",
        "SUANLI_OTHER {}",
    ):
        assert machine_line(line) is None
    assert metrics_subject("job_1", "node-a") == "metrics.job.job_1.node-a"


def test_result_files(tmp_path: Path) -> None:
    assert read_result(tmp_path) == ""
    (tmp_path / "result.json").write_text('{"bleu": 31.5}')
    assert read_result(tmp_path) == '{"bleu": 31.5}'
    (tmp_path / "result.json").write_text('{"x": "' + "a" * RESULT_LIMIT + '"}')
    size = (tmp_path / "result.json").stat().st_size
    assert json.loads(read_result(tmp_path)) == {"error": f"result.json is {size} bytes; the limit is 65536"}
    (tmp_path / "result.json").write_text("{not json")
    assert "not readable JSON" in json.loads(read_result(tmp_path))["error"]
    (tmp_path / "result.json").unlink()
    (tmp_path / "result.json").mkdir()
    assert read_result(tmp_path) == ""
