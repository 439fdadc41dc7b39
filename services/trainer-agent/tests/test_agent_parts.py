"""The agent's parts without NATS: slot declarations, launch commands, the process group."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from suanli_trainer_agent.discovery import SlotPool, parse_slots
from suanli_trainer_agent.runner import JobProcess, Launch, command_argv
from suanli_trainer_agent.staging import StagingError, stage


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
