"""What an evaluation is asked to do (`EvalConfig`, from a JSON file or the JSON in
SUANLI_EVAL_CONFIG), with the paths it leaves out taken from the agent's env."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# The agent's env contract (trainer-agent agent.py `_job_env`), as for the fine-tune runner.
ENV_MODEL = "SUANLI_MODEL_PATH"
ENV_DATASET = "SUANLI_DATASET_PATH"
ENV_OUTPUT = "SUANLI_OUTPUT_PATH"
# The scheduler sets env, not files: the whole config may ride in this variable as JSON.
ENV_CONFIG = "SUANLI_EVAL_CONFIG"


class EvaluationError(Exception):
    """An evaluation that cannot run for a reason the user can act on (bad config, file or model);
    its message is the job's failure reason (the last stderr line)."""


class ModelRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="How the model is named in the results")
    path: Path | None = Field(
        None,
        description="Hugging Face model folder; the first model may leave it out to take SUANLI_MODEL_PATH",
    )


class EvalConfig(BaseModel):
    """An evaluation run: the models side by side, the held-out file, and generation limits."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelRef] = Field(
        min_length=1, description="One model, or a fine-tune and its base, evaluated on the same examples"
    )
    file: Path = Field(
        description="Held-out examples: OpenAI messages or alpaca rows (sharegpt too), JSONL or a JSON "
        "array; a row may add 'choices' and 'answer' to be scored as multiple choice"
    )
    output_dir: Path = Field(description="Where result.json is written (default: SUANLI_OUTPUT_PATH)")
    max_new_tokens: int = Field(128, ge=1, le=8192, description="Tokens generated per example at most")
    max_examples: int = Field(200, ge=1, description="Only the file's first this many examples are used")
    batch_size: int = Field(8, ge=1, le=256, description="Prompts generated together (left-padded)")

    @model_validator(mode="after")
    def _paths_and_names(self) -> EvalConfig:
        for index, model in enumerate(self.models):
            if model.path is None:
                where = f" (nor is {ENV_MODEL} set)" if index == 0 else " (only the first model may omit it)"
                raise ValueError(f"models[{index}] ({model.name}) has no path{where}")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must differ: {names}")
        return self

    def model_paths(self) -> list[tuple[str, Path]]:
        return [(m.name, m.path) for m in self.models if m.path is not None]


def load_config(path: Path | None, env: Mapping[str, str] = os.environ) -> EvalConfig:
    """The config file (or the JSON in SUANLI_EVAL_CONFIG, or nothing), completed from the env."""
    values: Any = {}
    if path is not None:
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EvaluationError(f"cannot read the config {str(path)!r}: {exc}") from None
    elif env.get(ENV_CONFIG):
        try:
            values = json.loads(env[ENV_CONFIG])
        except ValueError as exc:
            raise EvaluationError(f"{ENV_CONFIG} is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise EvaluationError("the config must be a JSON object")
    models = values.get("models")
    if models is None and env.get(ENV_MODEL):
        values["models"] = [{"name": "model", "path": env[ENV_MODEL]}]
    elif (
        isinstance(models, list)
        and models
        and isinstance(models[0], dict)
        and models[0].get("path") in (None, "")
        and env.get(ENV_MODEL)
    ):
        models[0] = {**models[0], "path": env[ENV_MODEL]}
    for key, name in (("file", ENV_DATASET), ("output_dir", ENV_OUTPUT)):
        if values.get(key) in (None, "") and env.get(name):
            values[key] = env[name]
    try:
        return EvalConfig.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], e["msg"]) for e in exc.errors())
        raise EvaluationError(f"invalid evaluation config: {problems}") from None


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    message = message.removeprefix("Value error, ")  # how pydantic words a validator's ValueError
    return f"{'.'.join(str(p) for p in loc)}: {message}" if loc else message
