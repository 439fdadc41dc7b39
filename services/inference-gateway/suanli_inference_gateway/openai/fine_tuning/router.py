"""/v1/fine_tuning/jobs: OpenAI's fine-tuning API over the scheduler (the jobs), the catalog (the
model and files they train from) and the METRICS stream (what they measured)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Query, Request

from suanli_common.errors import NotFound
from suanli_inference_gateway.authentication.dependency import require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.clients.scheduler import Job, JobType, SchedulerApi
from suanli_inference_gateway.dependencies import gateway_deps, require_job_metrics, require_scheduler
from suanli_inference_gateway.openai.fine_tuning import history
from suanli_inference_gateway.openai.fine_tuning.jobs import build_job_spec, fine_tuning_object, is_fine_tune
from suanli_inference_gateway.openai.fine_tuning.protocol import (
    CreateFineTuningJobRequest,
    FineTuningCheckpointList,
    FineTuningEventList,
    FineTuningJobList,
    FineTuningJobObject,
)
from suanli_inference_gateway.openai.paging import AFTER, LIMIT, page
from suanli_inference_gateway.platform.protocol import client_request_id

router = APIRouter(prefix="/fine_tuning/jobs", tags=["fine-tuning"])


async def _fine_tune(scheduler: SchedulerApi, caller_id: str, job_id: str) -> Job:
    job = await scheduler.get_job(caller_id, job_id)
    if not is_fine_tune(job):  # another kind of job: not a fine-tune of this caller's
        raise NotFound(f"No fine-tuning job found with id {job_id!r}", param="fine_tuning_job_id")
    return job


@router.post("", response_model=FineTuningJobObject)
async def create_fine_tuning_job(
    body: CreateFineTuningJobRequest,
    request: Request,
    idempotency_key: str | None = Header(
        None, description="Retrying with the same key returns the job the first request created"
    ),
    principal: Principal = Depends(require_principal),
) -> FineTuningJobObject:
    scheduler = require_scheduler(request)
    spec = await build_job_spec(
        body, principal.user_id, gateway_deps(request).catalog, await scheduler.list_gpus()
    )
    job = await scheduler.submit_job(principal.user_id, client_request_id(idempotency_key), spec)
    return fine_tuning_object(job)


@router.get("", response_model=FineTuningJobList)
async def list_fine_tuning_jobs(
    request: Request,
    after: str | None = AFTER,
    limit: int = LIMIT,
    principal: Principal = Depends(require_principal),
) -> FineTuningJobList:
    jobs = await require_scheduler(request).list_jobs(principal.user_id, JobType.fine_tune)
    objects = [
        fine_tuning_object(job)
        for job in sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True)
        if is_fine_tune(job)
    ]
    chosen, has_more = page(objects, after, limit)
    return FineTuningJobList(data=chosen, has_more=has_more)


@router.get("/{fine_tuning_job_id}", response_model=FineTuningJobObject)
async def retrieve_fine_tuning_job(
    fine_tuning_job_id: str, request: Request, principal: Principal = Depends(require_principal)
) -> FineTuningJobObject:
    return fine_tuning_object(
        await _fine_tune(require_scheduler(request), principal.user_id, fine_tuning_job_id)
    )


@router.post("/{fine_tuning_job_id}/cancel", response_model=FineTuningJobObject)
async def cancel_fine_tuning_job(
    fine_tuning_job_id: str, request: Request, principal: Principal = Depends(require_principal)
) -> FineTuningJobObject:
    scheduler = require_scheduler(request)
    await _fine_tune(scheduler, principal.user_id, fine_tuning_job_id)
    return fine_tuning_object(await scheduler.cancel_job(principal.user_id, fine_tuning_job_id))


@router.get("/{fine_tuning_job_id}/events", response_model=FineTuningEventList)
async def list_fine_tuning_events(
    fine_tuning_job_id: str,
    request: Request,
    after: str | None = AFTER,
    limit: int = LIMIT,
    principal: Principal = Depends(require_principal),
) -> FineTuningEventList:
    job = await _fine_tune(require_scheduler(request), principal.user_id, fine_tuning_job_id)
    records = await require_job_metrics(request).records(job.id)
    chosen, has_more = page(history.events(job, records), after, limit)
    return FineTuningEventList(data=chosen, has_more=has_more)


@router.get("/{fine_tuning_job_id}/checkpoints", response_model=FineTuningCheckpointList)
async def list_fine_tuning_checkpoints(
    fine_tuning_job_id: str,
    request: Request,
    after: str | None = AFTER,
    limit: int = Query(10, ge=1, le=100, description="How many to return"),
    principal: Principal = Depends(require_principal),
) -> FineTuningCheckpointList:
    job = await _fine_tune(require_scheduler(request), principal.user_id, fine_tuning_job_id)
    records = await require_job_metrics(request).records(job.id)
    chosen, has_more = page(history.checkpoints(job, records), after, limit)
    return FineTuningCheckpointList(
        data=chosen,
        has_more=has_more,
        first_id=chosen[0].id if chosen else None,
        last_id=chosen[-1].id if chosen else None,
    )
