"""Staging a job's volume: its folders, the inputs it names copied in, with progress."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

Progress = Callable[[float, str], Awaitable[None]]


class StagingError(Exception):
    """The job cannot start on this node (its message says why, to the user)."""


@dataclass(frozen=True, slots=True)
class StagedPaths:
    volume: Path
    ckpt: Path
    output: Path
    model: str
    dataset: str


def inside(volume: Path, relative: str) -> Path:
    path = (volume / relative).resolve()
    if path != volume and volume not in path.parents:
        raise StagingError(f"{relative!r} leaves the job's volume")
    return path


async def stage(
    volume: Path,
    *,
    ckpt_path: str,
    model_save_path: str,
    model_path: str,
    dataset_path: str,
    volume_gb: int,
    on_progress: Progress,
) -> StagedPaths:
    volume, ckpt, output = await asyncio.to_thread(_prepare, volume, ckpt_path, model_save_path, volume_gb)
    inputs = [(name, src) for name, src in (("model", model_path), ("dataset", dataset_path)) if src]
    staged: dict[str, str] = {"model": "", "dataset": ""}
    await on_progress(0.0, "staging inputs")
    for index, (name, source) in enumerate(inputs):
        src = Path(source)
        target = volume / "inputs" / name / src.name
        await asyncio.to_thread(_copy, src, target, name)
        staged[name] = str(target)
        await on_progress((index + 1) / len(inputs), f"staged {name}")
    await on_progress(1.0, "inputs staged")
    return StagedPaths(volume, ckpt, output, staged["model"], staged["dataset"])


def _prepare(volume: Path, ckpt_path: str, model_save_path: str, volume_gb: int) -> tuple[Path, Path, Path]:
    volume = volume.resolve()
    volume.mkdir(parents=True, exist_ok=True)
    if volume_gb:
        free_gb = shutil.disk_usage(volume).free / 2**30
        if free_gb < volume_gb:
            raise StagingError(
                f"the job asks for a {volume_gb} GB volume; this node has {free_gb:.1f} GB free"
            )
    ckpt = inside(volume, ckpt_path or "checkpoints")
    output = inside(volume, model_save_path or "output")
    ckpt.mkdir(parents=True, exist_ok=True)
    output.mkdir(parents=True, exist_ok=True)
    return volume, ckpt, output


def _copy(src: Path, target: Path, name: str) -> None:
    if not src.exists():
        raise StagingError(f"{name} path {str(src)!r} does not exist on this node")
    if target.exists():
        return
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(src, partial)
    else:
        shutil.copy2(src, partial)
    os.replace(partial, target)  # a half-copied input is never taken for a staged one
