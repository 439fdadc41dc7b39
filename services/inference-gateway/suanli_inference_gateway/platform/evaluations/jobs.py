"""Evaluations as scheduler jobs: the job a create request becomes, and how a job is shown."""

from __future__ import annotations

import json

from pydantic import BaseModel, ValidationError

from suanli_common.errors import InvalidRequest, NotFound
from suanli_inference_gateway.clients.catalog import CatalogApi
from suanli_inference_gateway.clients.scheduler import Job, JobSpec, JobStatus, JobType, SchedulerApi
from suanli_inference_gateway.job_inputs import PUBLIC_STATUS, require_dataset, require_model
from suanli_inference_gateway.platform.evaluations.protocol import (
    CreateEvaluationRequest,
    EvaluationError,
    EvaluationObject,
    ModelScores,
)
from suanli_inference_gateway.platform.protocol import optional_unix_seconds, unix_seconds

RUNNER_COMMAND = "python -m suanli_trainer_agent.evaluate"
REQUEST_LABEL = "evaluation.request"
JOB_LABEL = "fine_tuning_job"  # set when an evaluation is of a fine-tune, to list them per job


class AcceptedEvaluation(BaseModel):
    """The request with its models resolved; kept with the job as a label."""

    file: str
    model: str
    compare_to: str | None
    fine_tuning_job: str | None


def is_evaluation(job: Job) -> bool:
    return job.spec.job_type is JobType.evaluation and REQUEST_LABEL in job.spec.labels


async def _subject(
    request: CreateEvaluationRequest, caller_id: str, scheduler: SchedulerApi
) -> tuple[str, str | None]:
    """(model, compare_to) the request names, a fine-tune resolved to its model and base."""
    if request.fine_tuning_job is None:
        assert request.model is not None  # the request model allows exactly one of the two
        return request.model, request.compare_to
    try:
        job = await scheduler.get_job(caller_id, request.fine_tuning_job)
    except NotFound:
        job = None
    if job is None or job.spec.fine_tune is None:
        raise InvalidRequest(
            f"no fine-tuning job {request.fine_tuning_job!r}", param="fine_tuning_job", code="not_found"
        )
    if job.status is not JobStatus.succeeded:
        raise InvalidRequest(
            f"fine-tuning job {job.id} is {job.status.value}; only a succeeded one has a model to evaluate",
            param="fine_tuning_job",
        )
    return job.output_model_id, request.compare_to or job.spec.fine_tune.base_model


async def build_job_spec(
    request: CreateEvaluationRequest, caller_id: str, catalog: CatalogApi, scheduler: SchedulerApi
) -> JobSpec:
    model_id, compare_id = await _subject(request, caller_id, scheduler)
    param = "model" if request.model else "fine_tuning_job"
    models = [await require_model(catalog, caller_id, model_id, param)]
    if compare_id:
        models.append(await require_model(catalog, caller_id, compare_id, "compare_to"))
    await require_dataset(catalog, caller_id, request.file, "file")
    accepted = AcceptedEvaluation(
        file=request.file, model=model_id, compare_to=compare_id, fine_tuning_job=request.fine_tuning_job
    )
    config = {
        "models": [{"name": m.id, "path": m.path} for m in models],
        "max_new_tokens": request.max_new_tokens,
        "max_examples": request.max_examples,
    }
    labels = {REQUEST_LABEL: accepted.model_dump_json()}
    if request.fine_tuning_job:
        labels[JOB_LABEL] = request.fine_tuning_job
    return JobSpec(
        name=f"evaluate {model_id}" + (f" vs {compare_id}" if compare_id else ""),
        job_type=JobType.evaluation,
        command=RUNNER_COMMAND,
        gpu_type=request.gpu_type or "",
        model_save_path="output",
        env={"SUANLI_EVAL_CONFIG": json.dumps(config)},
        dataset_path=await catalog.file_url(caller_id, request.file),
        labels=labels,
    )


def _results(job: Job) -> list[ModelScores] | None:
    if job.status is not JobStatus.succeeded or not job.result_json:
        return None
    try:
        models = json.loads(job.result_json).get("models", [])
        return [ModelScores.model_validate({**m, "model": m.get("name", "")}) for m in models]
    except (ValueError, AttributeError, ValidationError):
        return None


def evaluation_object(job: Job) -> EvaluationObject:
    accepted = AcceptedEvaluation.model_validate_json(job.spec.labels[REQUEST_LABEL])
    error = None
    if job.status in (JobStatus.failed, JobStatus.timed_out):
        error = EvaluationError(code=job.status.value, message=job.status_reason or "the evaluation failed")
    return EvaluationObject(
        id=job.id,
        status=PUBLIC_STATUS[job.status],
        file=accepted.file,
        model=accepted.model,
        compare_to=accepted.compare_to,
        fine_tuning_job=accepted.fine_tuning_job,
        created_at=unix_seconds(job.created_at),
        finished_at=optional_unix_seconds(job.finished_at),
        error=error,
        results=_results(job),
    )
