"""Wire models of /v1/fine_tuning, in OpenAI's shapes. The platform's own choices ride where
OpenAI leaves room: the training method and LoRA settings in `method.supervised`, placement
(`gpu_type`, `gpu_count`) in `metadata`."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from suanli_inference_gateway.platform.protocol import RequestModel

Auto = Literal["auto"]
Training = Literal["lora", "qlora", "full"]
FineTuningStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]

SUFFIX = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
MAX_METADATA = 16


class Hyperparameters(RequestModel):
    n_epochs: int | Auto = Field("auto", description="Passes over the training set (1-50) or auto")
    batch_size: int | Auto = Field("auto", description="Examples per optimizer step (1-256) or auto")
    learning_rate_multiplier: float | Auto = Field(
        "auto", description="Scales the method's base learning rate (lora 1e-3, full 1e-5); >0, <=10, or auto"
    )

    @field_validator("n_epochs")
    @classmethod
    def _epochs(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 50:
            raise ValueError("must be between 1 and 50, or 'auto'")
        return value

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 256:
            raise ValueError("must be between 1 and 256, or 'auto'")
        return value

    @field_validator("learning_rate_multiplier")
    @classmethod
    def _multiplier(cls, value: float | str) -> float | str:
        if not isinstance(value, str) and not 0 < value <= 10:
            raise ValueError("must be above 0 and at most 10, or 'auto'")
        return value


class LoraOptions(RequestModel):
    rank: int = Field(16, ge=1, le=256, description="LoRA rank r")
    alpha: int | None = Field(None, ge=1, le=1024, description="LoRA alpha (default: 2 x rank)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA path")
    target_modules: str | list[str] = Field(
        "all-linear", description="'all-linear' or the names of the modules LoRA adapts"
    )


class SupervisedMethod(RequestModel):
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    training: Training = Field(
        "lora", description="Suanli: lora, qlora (4-bit base; needs a CUDA GPU) or full"
    )
    lora: LoraOptions = Field(default_factory=LoraOptions, description="Suanli: LoRA settings")
    max_seq_length: int = Field(2048, ge=16, le=131072, description="Suanli: longer examples are cut")
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="Suanli: a checkpoint every this many steps (default: 50, and at the end)"
    )


class Method(RequestModel):
    type: Literal["supervised"] = Field("supervised", description="Only supervised fine-tuning")
    supervised: SupervisedMethod = Field(default_factory=SupervisedMethod)


class CreateFineTuningJobRequest(RequestModel):
    model: str = Field(
        min_length=1, max_length=128, description="A base or fine-tuned model of the repository"
    )
    training_file: str = Field(min_length=1, max_length=64, description="A processed file, purpose fine-tune")
    validation_file: str | None = Field(None, max_length=64, description="Held-out examples (loss per epoch)")
    hyperparameters: Hyperparameters | None = Field(
        None, description="Deprecated by OpenAI in favour of method.supervised.hyperparameters; still read"
    )
    method: Method | None = None
    suffix: str | None = Field(None, description="Up to 40 of A-Z a-z 0-9 . _ -; goes into the model's id")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Drawn at random when left out")
    metadata: dict[str, str] | None = Field(
        None, description="Up to 16 pairs; Suanli reads gpu_type and gpu_count from it"
    )
    integrations: list[dict[str, Any]] | None = Field(None, description="Not supported: must be empty")

    @field_validator("suffix")
    @classmethod
    def _suffix(cls, value: str | None) -> str | None:
        if value is not None and not SUFFIX.match(value):
            raise ValueError("must be 1 to 40 of the characters A-Z a-z 0-9 . _ -")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > MAX_METADATA:
            raise ValueError(f"holds at most {MAX_METADATA} pairs")
        for key, item in value.items():
            if not 0 < len(key) <= 64 or len(item) > 512:
                raise ValueError("keys are 1 to 64 characters and values at most 512")
        return value

    @field_validator("integrations")
    @classmethod
    def _integrations(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value:
            raise ValueError("integrations are not supported on this platform")
        return value

    @model_validator(mode="after")
    def _one_place_for_hyperparameters(self) -> CreateFineTuningJobRequest:
        method = self.method
        if (
            self.hyperparameters is not None
            and method
            and "hyperparameters" in method.supervised.model_fields_set
        ):
            raise ValueError("give hyperparameters either at the top level or in method, not both")
        return self

    @property
    def supervised(self) -> SupervisedMethod:
        supervised = (self.method or Method()).supervised
        if self.hyperparameters is not None:
            return supervised.model_copy(update={"hyperparameters": self.hyperparameters})
        return supervised


class ErrorObject(BaseModel):
    code: str
    message: str
    param: str | None = None


class HyperparametersObject(BaseModel):
    n_epochs: int | Auto
    batch_size: int | Auto
    learning_rate_multiplier: float | Auto


class SupervisedObject(BaseModel):
    hyperparameters: HyperparametersObject
    training: Training
    lora: LoraOptions | None
    max_seq_length: int


class MethodObject(BaseModel):
    type: Literal["supervised"] = "supervised"
    supervised: SupervisedObject


class FineTuningJobObject(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: ErrorObject | None
    fine_tuned_model: str | None = Field(description="The merged model's id once succeeded")
    finished_at: int | None
    hyperparameters: HyperparametersObject
    method: MethodObject
    model: str
    organization_id: str = Field(description="The owner (this platform has no organisations)")
    result_files: list[str] = Field(default_factory=list)
    seed: int
    status: FineTuningStatus
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    estimated_finish: int | None = None
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None
    user_provided_suffix: str | None
    adapter_model: str | None = Field(None, description="Suanli: the LoRA adapter's id once succeeded")


class FineTuningJobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobObject]
    has_more: bool


class FineTuningEventObject(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"]
    data: dict[str, Any] | None = None


class FineTuningEventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningEventObject]
    has_more: bool


class CheckpointMetrics(BaseModel):
    step: int
    train_loss: float | None = None
    valid_loss: float | None = None


class FineTuningCheckpointObject(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: CheckpointMetrics
    step_number: int


class FineTuningCheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningCheckpointObject]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None
