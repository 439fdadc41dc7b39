"""A fine-tune's OpenAI-shaped history from its job and METRICS records: events newest first with
metrics data, resumed attempts said out loud, one checkpoint per step, paging with `after`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from suanli_common.errors import InvalidRequest
from suanli_inference_gateway.clients.job_metrics import JobRecord, RecordKind
from suanli_inference_gateway.clients.scheduler import FineTuneSpec, Job, JobSpec, JobStatus, JobType
from suanli_inference_gateway.openai.fine_tuning import history
from suanli_inference_gateway.openai.fine_tuning.jobs import (
    REQUEST_LABEL,
    AcceptedFineTune,
    fine_tuning_object,
)
from suanli_inference_gateway.openai.fine_tuning.protocol import CreateFineTuningJobRequest
from suanli_inference_gateway.openai.paging import page

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def job(status: JobStatus = JobStatus.succeeded, result_json: str = "", reason: str = "") -> Job:
    accepted = AcceptedFineTune.of(
        CreateFineTuningJobRequest(model="base", training_file="file-1", suffix="s", seed=7)
    )
    return Job(
        id="job_1",
        owner_id="user_1",
        spec=JobSpec(
            name="fine-tune base",
            job_type=JobType.fine_tune,
            fine_tune=FineTuneSpec(base_model="base", suffix="s"),
            labels={REQUEST_LABEL: accepted.model_dump_json()},
        ),
        status=status,
        status_reason=reason,
        node_ids=["node-a"],
        attempt=2,
        progress=1.0,
        created_at=T0,
        started_at=T0 + timedelta(seconds=1),
        finished_at=T0 + timedelta(seconds=60) if status.terminal else None,
        output_path="/v/job_1/output",
        result_json=result_json,
        output_model_id="ft:base:s:job_1",
    )


def record(seq: int, kind: RecordKind, body: dict[str, Any], attempt: int = 1) -> JobRecord:
    return JobRecord(
        seq=seq,
        kind=kind,
        attempt=attempt,
        node=f"node-{attempt}",
        time=T0 + timedelta(seconds=seq),
        body=body,
    )


RECORDS = [
    record(1, "metrics", {"step": 1, "total_steps": 2, "loss": 2.5, "learning_rate": 1e-3}),
    record(2, "checkpoint", {"step": 1, "path": "/v/ckpt-1"}),
    record(3, "metrics", {"step": 2, "total_steps": 2, "loss": 1.5, "valid_loss": 1.75}, attempt=2),
    record(4, "checkpoint", {"step": 2, "path": "/v/ckpt-2"}, attempt=2),
    record(5, "result", {"trained_tokens": 100}, attempt=2),
]


def test_events_run_newest_first_from_creation_to_the_end() -> None:
    events = history.events(job(), RECORDS)
    assert [e.message for e in events] == [
        "The job has successfully completed",
        "New fine-tuned model created: ft:base:s:job_1",
        "Checkpoint created at step 2",
        "Step 2/2: training loss=1.5000, validation loss=1.7500",
        "Attempt 2 resumed on node-2 from the last checkpoint",
        "Checkpoint created at step 1",
        "Step 1/2: training loss=2.5000",
        "Fine-tuning job started",
        "Validated training file: file-1",
        "Created fine-tuning job: job_1",
    ]
    metrics = [e for e in events if e.type == "metrics"]
    assert [e.data["train_loss"] for e in metrics if e.data] == [1.5, 2.5]
    assert len({e.id for e in events}) == len(events)


def test_a_failed_job_ends_with_its_reason_as_an_error_event() -> None:
    failed = job(JobStatus.failed, reason="fine-tune crashed: ValueError: boom")
    events = history.events(failed, [])
    assert events[0].level == "error" and "fine-tune crashed: ValueError: boom" in events[0].message
    shown = fine_tuning_object(failed)
    assert shown.status == "failed" and shown.error is not None
    assert shown.error.message == "fine-tune crashed: ValueError: boom" and shown.fine_tuned_model is None


def test_checkpoints_one_per_step_newest_first_with_that_steps_losses() -> None:
    checkpoints = history.checkpoints(job(), RECORDS)
    assert [c.step_number for c in checkpoints] == [2, 1]
    assert checkpoints[0].metrics.train_loss == 1.5 and checkpoints[0].metrics.valid_loss == 1.75
    assert checkpoints[0].fine_tuned_model_checkpoint == "ft:base:s:job_1:ckpt-step-2"


def test_paging_continues_after_the_given_id_and_refuses_an_unknown_one() -> None:
    events = history.events(job(), RECORDS)
    first, more = page(events, None, 4)
    second, _ = page(events, first[-1].id, 4)
    assert more and second[0].id == events[4].id
    last, more = page(events, events[-2].id, 4)
    assert [e.id for e in last] == [events[-1].id] and not more
    with pytest.raises(InvalidRequest):
        page(events, "ftevent-unknown", 4)


def test_a_succeeded_job_shows_what_auto_became_and_its_models() -> None:
    result = '{"trained_tokens": 1234, "hyperparameters": {"n_epochs": 6, "batch_size": 4}}'
    shown = fine_tuning_object(job(result_json=result))
    assert shown.status == "succeeded" and shown.trained_tokens == 1234
    assert (shown.hyperparameters.n_epochs, shown.hyperparameters.batch_size) == (6, 4)
    assert shown.hyperparameters.learning_rate_multiplier == "auto"
    assert shown.fine_tuned_model == "ft:base:s:job_1" and shown.adapter_model == "ft:base:s:job_1:adapter"
    assert shown.seed == 7 and shown.user_provided_suffix == "s"
