"""Checkpoints a run resumes from: the trainable weights (the LoRA adapter, or every weight for a
full fine-tune), the optimizer, the step and the RNG state, one folder per step, written under a
temporary name and renamed into place so a kill mid-save never leaves a checkpoint that looks whole.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from suanli_trainer_agent.finetune.errors import FineTuneError

PREFIX = "checkpoint-"
WEIGHTS = "trainable.safetensors"
OPTIMIZER = "optimizer.pt"
STATE = "trainer_state.json"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    path: Path
    step: int


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def list_checkpoints(folder: Path) -> list[Checkpoint]:
    """Whole checkpoints, oldest first (half-written ones have a temporary name and are skipped)."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        if path.is_dir() and path.name.startswith(PREFIX) and (path / STATE).is_file():
            try:
                found.append(Checkpoint(path, int(path.name[len(PREFIX) :])))
            except ValueError:
                continue
    return sorted(found, key=lambda c: c.step)


def clear_partial(folder: Path) -> None:
    """Drops what a killed save left behind."""
    if folder.is_dir():
        for path in folder.glob(f".{PREFIX}*"):
            shutil.rmtree(path, ignore_errors=True)


def save(
    folder: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    fingerprint: dict[str, Any],
    keep: int,
) -> Checkpoint:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / checkpoint_name(step)
    partial = folder / f".{final.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    # Only what training changes: for LoRA a few MB instead of the whole model. named_parameters()
    # lists a tied weight once, so safetensors never sees two names for one tensor.
    weights = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(weights, str(partial / WEIGHTS))
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python_rng": random.getstate(),
        },
        partial / OPTIMIZER,
    )
    (partial / STATE).write_text(json.dumps({"step": step, "fingerprint": fingerprint}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old.path, ignore_errors=True)
    return Checkpoint(final, step)


def restore(
    checkpoint: Checkpoint,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    fingerprint: dict[str, Any],
) -> int:
    """Loads the checkpoint into the model and optimizer; returns the step it was taken after."""
    state = json.loads((checkpoint.path / STATE).read_text())
    if state.get("fingerprint") != fingerprint:
        # Resuming a different run's checkpoint would silently train something else.
        raise FineTuneError(
            f"{checkpoint.path} was written by a run with other settings "
            f"({state.get('fingerprint')} != {fingerprint}); clear the checkpoint folder to start over"
        )
    weights = load_file(str(checkpoint.path / WEIGHTS))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(weights) != trainable:
        raise FineTuneError(f"{checkpoint.path} does not hold this model's trainable weights")
    model.load_state_dict(weights, strict=False)
    extra = torch.load(checkpoint.path / OPTIMIZER, weights_only=False)  # our own file
    optimizer.load_state_dict(extra["optimizer"])
    torch.set_rng_state(extra["torch_rng"])
    if extra["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(extra["cuda_rng"])
    random.setstate(extra["python_rng"])
    return int(state["step"])
