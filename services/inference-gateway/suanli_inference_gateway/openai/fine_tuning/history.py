"""A fine-tune's history, OpenAI-shaped: its events (status changes and per-step metrics) and its
checkpoints, built from the job and the records its attempts left on the METRICS stream. Lists are
newest first and page with `after` (an id of the previous page) and `limit`, as OpenAI's do."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from suanli_inference_gateway.clients.job_metrics import JobRecord
from suanli_inference_gateway.clients.scheduler import Job, JobStatus
from suanli_inference_gateway.openai.fine_tuning.jobs import accepted_of
from suanli_inference_gateway.openai.fine_tuning.protocol import (
    CheckpointMetrics,
    FineTuningCheckpointObject,
    FineTuningEventObject,
)
from suanli_inference_gateway.platform.protocol import unix_seconds

Level = Literal["info", "warn", "error"]
METRIC_KEYS = ("step", "total_steps", "epoch", "learning_rate", "tokens_per_second", "eta_seconds")


def _event(
    job: Job,
    tag: str,
    at: datetime,
    message: str,
    level: Level = "info",
    metrics: dict[str, Any] | None = None,
) -> FineTuningEventObject:
    return FineTuningEventObject(
        id=f"ftevent-{job.id}-{tag}",
        created_at=unix_seconds(at),
        level=level,
        message=message,
        type="metrics" if metrics is not None else "message",
        data=metrics,
    )


def _metrics_message(body: dict[str, Any]) -> str:
    loss = body.get("loss", float("nan"))
    text = f"Step {body.get('step')}/{body.get('total_steps')}: training loss={loss:.4f}"
    if body.get("valid_loss") is not None:
        text += f", validation loss={body['valid_loss']:.4f}"
    return text


def _record_events(job: Job, records: Sequence[JobRecord]) -> list[FineTuningEventObject]:
    events = []
    attempt = 1
    for record in records:
        if record.attempt > attempt:
            attempt = record.attempt
            events.append(
                _event(
                    job,
                    f"a{record.seq}",
                    record.time,
                    f"Attempt {attempt} resumed on {record.node} from the last checkpoint",
                    "warn",
                )
            )
        body = record.body
        if record.kind == "metrics":
            data: dict[str, Any] = {k: body[k] for k in METRIC_KEYS if k in body}
            data["train_loss"] = body.get("loss")
            if "valid_loss" in body:
                data["valid_loss"] = body["valid_loss"]
            events.append(_event(job, f"m{record.seq}", record.time, _metrics_message(body), metrics=data))
        elif record.kind == "checkpoint":
            events.append(
                _event(job, f"c{record.seq}", record.time, f"Checkpoint created at step {body.get('step')}")
            )
    return events


def events(job: Job, records: Sequence[JobRecord]) -> list[FineTuningEventObject]:
    """Newest first."""
    accepted = accepted_of(job)
    found = [
        _event(job, "created", job.created_at, f"Created fine-tuning job: {job.id}"),
        _event(job, "validated", job.created_at, f"Validated training file: {accepted.training_file}"),
    ]
    if job.started_at is not None:
        found.append(_event(job, "started", job.started_at, "Fine-tuning job started"))
    found += _record_events(job, records)
    if job.finished_at is not None:
        if job.status is JobStatus.succeeded:
            found.append(
                _event(job, "model", job.finished_at, f"New fine-tuned model created: {job.output_model_id}")
            )
            found.append(_event(job, "end", job.finished_at, "The job has successfully completed"))
        elif job.status is JobStatus.cancelled:
            found.append(_event(job, "end", job.finished_at, "The job was cancelled"))
        else:
            reason = job.status_reason or job.status.value
            found.append(_event(job, "end", job.finished_at, f"The job failed: {reason}", "error"))
    return found[::-1]


def checkpoints(job: Job, records: Sequence[JobRecord]) -> list[FineTuningCheckpointObject]:
    """One per step that was checkpointed (a resumed attempt may checkpoint a step again: the
    newest counts), newest first, with the metrics of that step."""
    losses: dict[int, dict[str, Any]] = {}
    taken: dict[int, JobRecord] = {}
    for record in records:
        step = record.body.get("step")
        if not isinstance(step, int):
            continue
        if record.kind == "metrics":
            losses[step] = record.body
        elif record.kind == "checkpoint":
            taken[step] = record
    model = job.output_model_id or f"ft:{accepted_of(job).model}:{job.id}"
    return [
        FineTuningCheckpointObject(
            id=f"ftckpt-{job.id}-{step}",
            created_at=unix_seconds(taken[step].time),
            fine_tuned_model_checkpoint=f"{model}:ckpt-step-{step}",
            fine_tuning_job_id=job.id,
            metrics=CheckpointMetrics(
                step=step,
                train_loss=losses.get(step, {}).get("loss"),
                valid_loss=losses.get(step, {}).get("valid_loss"),
            ),
            step_number=step,
        )
        for step in sorted(taken, reverse=True)
    ]
