"""/api/v1/jobs: adapters from HTTP to the scheduler (jobs) and the LOGS stream (their output)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import StreamingResponse

from suanli_inference_gateway.authentication.dependency import require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.clients.scheduler import JobType
from suanli_inference_gateway.dependencies import require_job_logs, require_scheduler
from suanli_inference_gateway.platform.jobs.logs import log_events, log_text
from suanli_inference_gateway.platform.jobs.protocol import CreateJobRequest, JobList, JobObject
from suanli_inference_gateway.platform.protocol import client_request_id

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobObject)
async def create_job(
    body: CreateJobRequest,
    request: Request,
    idempotency_key: str | None = Header(
        None, description="Retrying with the same key returns the job the first request created"
    ),
    principal: Principal = Depends(require_principal),
) -> JobObject:
    job = await require_scheduler(request).submit_job(
        principal.user_id, client_request_id(idempotency_key), body.to_spec()
    )
    return JobObject.of(job)


@router.get("", response_model=JobList)
async def list_jobs(request: Request, principal: Principal = Depends(require_principal)) -> JobList:
    jobs = await require_scheduler(request).list_jobs(principal.user_id)
    # Custom jobs only: fine-tunes and deployments have surfaces of their own.
    return JobList(
        data=[JobObject.of(job) for job in jobs if job.spec.job_type in (JobType.pytorch, JobType.mpi)]
    )


@router.get("/{job_id}", response_model=JobObject)
async def get_job(
    job_id: str, request: Request, principal: Principal = Depends(require_principal)
) -> JobObject:
    return JobObject.of(await require_scheduler(request).get_job(principal.user_id, job_id))


@router.get(
    "/{job_id}/logs",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "text/event-stream (follow, the default) or text/plain (follow=false)",
            "content": {"text/event-stream": {}, "text/plain": {}},
        }
    },
)
async def job_logs(
    job_id: str,
    request: Request,
    follow: bool = Query(True, description="Stream (SSE) until the job ends; false: the log so far as text"),
    last_event_id: str | None = Header(None, description="SSE resume: the id of the last event received"),
    principal: Principal = Depends(require_principal),
) -> StreamingResponse:
    scheduler = require_scheduler(request)
    logs = require_job_logs(request)
    # First, so that another user's job is a 404 before any of its log is read.
    job = await scheduler.get_job(principal.user_id, job_id)
    if not follow:
        return StreamingResponse(log_text(logs, job), media_type="text/plain; charset=utf-8")
    after_seq = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
    return StreamingResponse(
        log_events(logs, scheduler, principal.user_id, job, after_seq=after_seq),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/{job_id}/cancel", response_model=JobObject)
async def cancel_job(
    job_id: str, request: Request, principal: Principal = Depends(require_principal)
) -> JobObject:
    return JobObject.of(await require_scheduler(request).cancel_job(principal.user_id, job_id))
