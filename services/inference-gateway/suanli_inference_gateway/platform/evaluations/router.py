"""/api/v1/evaluations: adapters from HTTP to the scheduler (the evaluation jobs)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Query, Request, status

from suanli_common.errors import NotFound
from suanli_inference_gateway.authentication.dependency import require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.clients.scheduler import Job, JobType, SchedulerApi
from suanli_inference_gateway.dependencies import gateway_deps, require_scheduler
from suanli_inference_gateway.platform.evaluations.jobs import (
    JOB_LABEL,
    build_job_spec,
    evaluation_object,
    is_evaluation,
)
from suanli_inference_gateway.platform.evaluations.protocol import (
    CreateEvaluationRequest,
    EvaluationList,
    EvaluationObject,
)
from suanli_inference_gateway.platform.protocol import client_request_id

router = APIRouter(prefix="/evaluations", tags=["evaluations"])


async def _evaluation(scheduler: SchedulerApi, caller_id: str, evaluation_id: str) -> Job:
    job = await scheduler.get_job(caller_id, evaluation_id)
    if not is_evaluation(job):
        raise NotFound(f"no evaluation {evaluation_id!r}", param="evaluation_id")
    return job


@router.post("", status_code=status.HTTP_201_CREATED, response_model=EvaluationObject)
async def create_evaluation(
    body: CreateEvaluationRequest,
    request: Request,
    idempotency_key: str | None = Header(
        None, description="Retrying with the same key returns the evaluation the first request created"
    ),
    principal: Principal = Depends(require_principal),
) -> EvaluationObject:
    scheduler = require_scheduler(request)
    spec = await build_job_spec(body, principal.user_id, gateway_deps(request).catalog, scheduler)
    job = await scheduler.submit_job(principal.user_id, client_request_id(idempotency_key), spec)
    return evaluation_object(job)


@router.get("", response_model=EvaluationList)
async def list_evaluations(
    request: Request,
    fine_tuning_job: str | None = Query(None, description="Only the evaluations of this fine-tune"),
    principal: Principal = Depends(require_principal),
) -> EvaluationList:
    jobs = await require_scheduler(request).list_jobs(principal.user_id, JobType.evaluation)
    chosen = [
        job
        for job in sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True)
        if is_evaluation(job)
        and (fine_tuning_job is None or job.spec.labels.get(JOB_LABEL) == fine_tuning_job)
    ]
    return EvaluationList(data=[evaluation_object(job) for job in chosen])


@router.get("/{evaluation_id}", response_model=EvaluationObject)
async def get_evaluation(
    evaluation_id: str, request: Request, principal: Principal = Depends(require_principal)
) -> EvaluationObject:
    return evaluation_object(await _evaluation(require_scheduler(request), principal.user_id, evaluation_id))


@router.post("/{evaluation_id}/cancel", response_model=EvaluationObject)
async def cancel_evaluation(
    evaluation_id: str, request: Request, principal: Principal = Depends(require_principal)
) -> EvaluationObject:
    scheduler = require_scheduler(request)
    await _evaluation(scheduler, principal.user_id, evaluation_id)
    return evaluation_object(await scheduler.cancel_job(principal.user_id, evaluation_id))
