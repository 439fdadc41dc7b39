"""The agent's parts without NATS: slot declarations, launch commands, the process group, staging,
machine lines and result files."""

from __future__ import annotations

import asyncio
import json
import os
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
