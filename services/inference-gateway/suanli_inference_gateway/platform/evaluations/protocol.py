"""Wire models of /api/v1/evaluations."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from suanli_inference_gateway.platform.protocol import RequestModel

EvaluationStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class CreateEvaluationRequest(RequestModel):
    """Either `model`, or `fine_tuning_job` (its fine-tuned model, side by side with its base)."""

    file: str = Field(
        min_length=1, max_length=64, description="Held-out examples: a processed fine-tune file"
    )
    model: str | None = Field(None, max_length=200, description="The model to evaluate")
    fine_tuning_job: str | None = Field(
        None, max_length=64, description="Evaluate this succeeded fine-tune's model (and its base)"
    )
    compare_to: str | None = Field(
        None,
        max_length=200,
        description="A second model run side by side (default with fine_tuning_job: the base model)",
    )
    max_new_tokens: int = Field(128, ge=1, le=4096, description="Longest answer generated per example")
    max_examples: int = Field(200, ge=1, le=10_000, description="Only the first this many examples")
    gpu_type: str | None = Field(None, max_length=64, description="A GPU type of the cluster; any if absent")

    @model_validator(mode="after")
    def _one_subject(self) -> CreateEvaluationRequest:
        if (self.model is None) == (self.fine_tuning_job is None):
            raise ValueError("give exactly one of model and fine_tuning_job")
        return self


class ModelScores(BaseModel):
    model: str
    bleu: float | None = Field(description="Corpus BLEU (sacrebleu), 0-100")
    exact_match: float | None = Field(description="Share of answers equal to the reference (normalised)")
    accuracy: float | None = Field(description="Share right among multiple-choice rows; null without any")
    examples: int
    seconds: float | None = None
    samples: list[dict[str, Any]] = Field(default_factory=list, description="The first few answers")


class EvaluationError(BaseModel):
    code: str
    message: str


class EvaluationObject(BaseModel):
    id: str
    object: Literal["evaluation"] = "evaluation"
    status: EvaluationStatus
    file: str
    model: str
    compare_to: str | None
    fine_tuning_job: str | None
    created_at: int
    finished_at: int | None
    error: EvaluationError | None
    results: list[ModelScores] | None = Field(description="Per model, once succeeded")


class EvaluationList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EvaluationObject]
