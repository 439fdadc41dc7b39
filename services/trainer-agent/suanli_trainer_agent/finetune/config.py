"""What a fine-tune run is asked to do (`FineTuneConfig`, read from a JSON file, inline JSON or the
agent's env), and the concrete hyperparameters its "auto" choices resolve to for a dataset."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from suanli_trainer_agent.finetune.errors import FineTuneError

Auto = Literal["auto"]
Method = Literal["lora", "qlora", "full"]

# "auto" choices, tuned so a 20-example identity set teaches SmolLM2-135M a new name in about a
# minute on two CPU cores (20 steps; it already answers with the new name after 15), and stay
# reasonable for real datasets (OpenAI's own "auto" also scales epochs up for small sets and down
# for large ones).
AUTO_BATCH_SIZE = 4
BASE_LEARNING_RATE: dict[str, float] = {"lora": 1e-3, "qlora": 1e-3, "full": 1e-5}
AUTO_BASE_EPOCHS = 3
AUTO_MIN_STEPS = 20  # small sets get more epochs until they see this many optimizer steps
AUTO_MAX_EPOCHS = 10

# The agent's env contract (trainer-agent agent.py `_job_env`).
ENV_MODEL = "SUANLI_MODEL_PATH"
ENV_DATASET = "SUANLI_DATASET_PATH"
ENV_OUTPUT = "SUANLI_OUTPUT_PATH"
ENV_CKPT = "SUANLI_CKPT_PATH"
# The scheduler cannot put a file into the job's volume, but it can set env (the offer's spec.env):
# the whole config may ride in this variable as JSON.
ENV_CONFIG = "SUANLI_FINETUNE_CONFIG"


class FineTuneConfig(BaseModel):
    """A fine-tune run: inputs, outputs, method and hyperparameters ("auto" = chosen from the data)."""

    model_config = ConfigDict(extra="forbid")

    model_path: Path = Field(description="Hugging Face model folder (config, weights, tokenizer)")
    train_file: Path = Field(
        description="Training examples: OpenAI messages, alpaca or sharegpt rows, as JSONL or a JSON array "
        "(a folder: its single .jsonl/.json file, or train.jsonl)"
    )
    validation_file: Path | None = Field(
        None, description="Held-out examples; their loss is reported per epoch"
    )
    output_dir: Path = Field(description="Where adapter/, merged/, tensorboard/ and result.json are written")
    checkpoint_dir: Path | None = Field(
        None, description="Where checkpoints go and are resumed from (default: output_dir/checkpoints)"
    )
    method: Method = Field("lora", description="lora, qlora (CUDA + bitsandbytes only) or full")
    n_epochs: int | Auto = Field("auto", description="Passes over the training set")
    batch_size: int | Auto = Field("auto", description="Examples per optimizer step")
    learning_rate_multiplier: float | Auto = Field(
        "auto", description="Scales the method's base learning rate (lora 1e-3, full 1e-5)"
    )
    lora_rank: int = Field(16, ge=1, description="LoRA rank r")
    lora_alpha: int | None = Field(None, ge=1, description="LoRA alpha (default: 2 x rank)")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA path")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules LoRA adapts: 'all-linear' or a list of module names"
    )
    max_seq_length: int = Field(2048, ge=8, description="Longer examples are cut to this many tokens")
    warmup_ratio: float = Field(0.05, ge=0.0, le=0.5, description="Share of steps the learning rate ramps up")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradients are clipped to this norm")
    seed: int = Field(42, description="Seeds LoRA init, shuffling and dropout")
    save_every_steps: int = Field(50, ge=1, description="A checkpoint every this many optimizer steps")
    keep_checkpoints: int = Field(2, ge=1, description="How many of the newest checkpoints are kept")
    suffix: str = Field("", max_length=64, description="Goes into the fine-tuned model's name")

    @property
    def resolved_checkpoint_dir(self) -> Path:
        return self.checkpoint_dir or self.output_dir / "checkpoints"


@dataclass(frozen=True, slots=True)
class Hyperparameters:
    """The concrete values a run trains with (what "auto" became), reported in result.json."""

    n_epochs: int
    batch_size: int
    learning_rate: float
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


def resolve(config: FineTuneConfig, n_examples: int) -> Hyperparameters:
    if n_examples < 1:
        raise FineTuneError("the training file holds no usable examples")
    batch = AUTO_BATCH_SIZE if config.batch_size == "auto" else config.batch_size
    if batch < 1:
        raise FineTuneError("batch_size must be at least 1")
    batch = min(batch, n_examples)
    steps_per_epoch = math.ceil(n_examples / batch)
    if config.n_epochs == "auto":
        wanted = max(AUTO_BASE_EPOCHS, math.ceil(AUTO_MIN_STEPS / steps_per_epoch))
        epochs = min(AUTO_MAX_EPOCHS, wanted)
    else:
        epochs = config.n_epochs
    if epochs < 1:
        raise FineTuneError("n_epochs must be at least 1")
    multiplier = 1.0 if config.learning_rate_multiplier == "auto" else config.learning_rate_multiplier
    if multiplier <= 0:
        raise FineTuneError("learning_rate_multiplier must be positive")
    total = steps_per_epoch * epochs
    return Hyperparameters(
        n_epochs=epochs,
        batch_size=batch,
        learning_rate=BASE_LEARNING_RATE[config.method] * multiplier,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        warmup_steps=round(total * config.warmup_ratio),
    )


def load_config(path: Path | None, env: Mapping[str, str] = os.environ) -> FineTuneConfig:
    """The config file (or the JSON in SUANLI_FINETUNE_CONFIG), with paths it leaves out taken from
    the agent's env, so `--config` may hold only hyperparameters."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise FineTuneError(f"cannot read the config {str(path)!r}: {exc}") from None
    elif env.get(ENV_CONFIG):
        try:
            values = json.loads(env[ENV_CONFIG])
        except json.JSONDecodeError as exc:
            raise FineTuneError(f"{ENV_CONFIG} is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise FineTuneError("the config must be a JSON object")
    for key, name in (
        ("model_path", ENV_MODEL),
        ("train_file", ENV_DATASET),
        ("output_dir", ENV_OUTPUT),
        ("checkpoint_dir", ENV_CKPT),
    ):
        if values.get(key) in (None, "") and env.get(name):
            values[key] = env[name]
    try:
        return FineTuneConfig.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise FineTuneError(f"invalid fine-tune config: {problems}") from None
