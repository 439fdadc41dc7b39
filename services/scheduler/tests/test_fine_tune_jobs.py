"""Fine-tune and evaluation jobs: their spec (fine_tune, labels) on the wire and in the database,
what submit refuses, the result a succeeded job leaves, and the facts published about them.

Nodes here are driven by hand (heartbeats and reports straight to the service), so each report
a real agent would send is chosen by the test: the agent's own side is tested in trainer-agent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from nats import errors as nats_errors

from suanli_common.errors import InvalidRequest
from suanli_common.proto.suanli.v1 import events_pb2
from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.proto.suanli.v1.scheduler_pb2_grpc import SchedulerServiceStub
from suanli_scheduler.domain import FineTuneSpec, Job, JobSpec, JobStatus, JobType, validate_spec
from suanli_scheduler.ledger import NodeInventory, SlotPool
from suanli_scheduler.main import SchedulerApp
from suanli_scheduler.protocol import report_from_pb, spec_from_pb, spec_to_pb
from suanli_scheduler.repository import JobRepository
from suanli_scheduler.service import AttemptReport, AttemptSeen, Heartbeat

from .test_jobs import wait_for

Stub = SchedulerServiceStub
JOB_ID = "job_01abcdefghjkmnpqrstvwxyz012"
REQUEST = '{"model": "smollm2-135m-instruct", "training_file": "file-1", "suffix": "my-suffix"}'


def fine_tune_spec(**changes: object) -> JobSpec:
    values: dict[str, object] = {
        "name": "ft",
        "job_type": JobType.fine_tune,
        "command": "python -m suanli_trainer_agent.finetune",
        "model_save_path": "output",
        "model_path": "file:///models/smollm2",
        "dataset_path": "file:///files/file-1",
        "fine_tune": FineTuneSpec("smollm2-135m-instruct", "my-suffix"),
        "labels": {"openai.request": REQUEST, "method": "lora"},
    }
    values.update(changes)
    return JobSpec(**values)  # type: ignore[arg-type]


def test_the_spec_round_trips_through_json_and_protobuf() -> None:
    spec = fine_tune_spec()
    assert JobSpec.from_json(spec.to_json()) == spec
    assert spec_from_pb(spec_to_pb(spec)) == spec
    message = spec_to_pb(spec)
    assert message.job_type == pb.JOB_TYPE_FINE_TUNE and message.fine_tune.suffix == "my-suffix"
    assert dict(message.labels) == spec.labels

    evaluation = JobSpec("eval", JobType.evaluation, command="python -m x", labels={"k": "v"})
    assert spec_from_pb(spec_to_pb(evaluation)) == evaluation
    assert spec_to_pb(evaluation).job_type == pb.JOB_TYPE_EVALUATION
    assert not spec_to_pb(evaluation).HasField("fine_tune")
    assert JobSpec.from_json(evaluation.to_json()) == evaluation

    # A row stored before fine_tune and labels existed still loads.
    old = {"name": "old", "job_type": "pytorch", "command": "true", "nodes": 1, "gpus_per_node": 1}
    loaded = JobSpec.from_json(old)
    assert loaded.fine_tune is None and loaded.labels == {}

    job = Job(JOB_ID, "u", spec, JobStatus.queued, "", 1, "", [], 0.0, datetime.now(UTC), None, None)
    assert job.output_model_id == f"ft:smollm2-135m-instruct:my-suffix:{JOB_ID}"
    assert evaluation.output_model_id(JOB_ID) == ""
    assert fine_tune_spec(fine_tune=FineTuneSpec("base")).output_model_id(JOB_ID) == f"ft:base:{JOB_ID}"


def test_a_report_carries_its_result() -> None:
    message = pb.JobReport(job_id="j", phase=pb.JOB_STATUS_SUCCEEDED, result_json='{"bleu": 0.5}')
    assert report_from_pb(message).result_json == '{"bleu": 0.5}'


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"fine_tune": None}, "fine_tune.base_model"),
        ({"fine_tune": FineTuneSpec("  ")}, "fine_tune.base_model"),
        ({"fine_tune": FineTuneSpec("bad model")}, "fine_tune.base_model"),
        ({"fine_tune": FineTuneSpec("base", "a:b")}, "fine_tune.suffix"),
        ({"fine_tune": FineTuneSpec("base", "x" * 65)}, "fine_tune.suffix"),
        ({"job_type": JobType.pytorch}, "fine_tune"),
        ({"job_type": JobType.evaluation}, "fine_tune"),
        ({"job_type": JobType.deployment}, "job_type"),
        ({"labels": {f"k{i}": "v" for i in range(33)}}, "labels"),
        ({"labels": {"": "v"}}, "labels"),
        ({"labels": {"k" * 65: "v"}}, "labels"),
        ({"labels": {"a b": "v"}}, "labels"),
        ({"labels": {"k": "x" * (16 * 1024 + 1)}}, "labels"),
    ],
)
def test_validation_refuses_bad_fine_tunes_and_labels(changes: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        validate_spec(fine_tune_spec(**changes))
    assert exc.value.param == param


def test_validation_accepts_fine_tunes_evaluations_and_labels_at_their_limits() -> None:
    labels = {f"k.{i:02d}_-" + "x" * 58: "é" * (8 * 1024) for i in range(32)}
    spec = validate_spec(fine_tune_spec(labels=labels, fine_tune=FineTuneSpec(" base ", "")))
    assert spec.fine_tune == FineTuneSpec("base", "") and spec.labels == labels
    evaluation = validate_spec(JobSpec("eval", JobType.evaluation, command="python -m x", labels={"a": ""}))
    assert evaluation.fine_tune is None


class HandDrivenNodes:
    """Nodes that beat as long as the test runs and keep every lease they hold alive, without
    running anything: the test says what their agents report."""

    def __init__(self, app: SchedulerApp, *node_ids: str) -> None:
        self._app = app
        self._nodes = node_ids

    async def beat(self) -> None:
        service = self._app.service
        for node in self._nodes:
            held = tuple(
                AttemptSeen(lease.job_id, lease.attempt, lease.lease_id, JobStatus.queued)
                for lease in service.leases.all()
                if node in lease.node_ids
            )
            inventory = NodeInventory(node, "127.0.0.1", (SlotPool("cpu", 1),))
            await service.on_heartbeat(Heartbeat(inventory, held))

    async def run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(0.1)


@pytest.fixture
async def nodes(scheduler: SchedulerApp) -> AsyncIterator[HandDrivenNodes]:
    fleet = HandDrivenNodes(scheduler, "n0", "n1")
    await fleet.beat()
    task = asyncio.create_task(fleet.run())
    yield fleet
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def submit_spec(stub: Stub, spec: JobSpec, owner: str = "user_1") -> pb.Job:
    job: pb.Job = await stub.SubmitJob(pb.SubmitJobRequest(owner_id=owner, spec=spec_to_pb(spec)))
    return job


async def placed(app: SchedulerApp, stub: Stub, job_id: str) -> tuple[str, list[str]]:
    """The job's lease and its nodes by rank, once it is placed."""
    await wait_for(lambda: stub.GetJob(pb.GetJobRequest(job_id=job_id)), lambda j: bool(j.node_ids))
    async with app.db.session() as session:
        repo = JobRepository(session)
        row = await repo.get(job_id)
        assert row is not None
        placements = await repo.placements(job_id, row.attempt)
        return row.lease_id, [p.node_id for p in placements]


async def test_submit_refuses_a_fine_tune_without_its_base_over_grpc(
    scheduler: SchedulerApp, stub: Stub
) -> None:
    message = spec_to_pb(fine_tune_spec())
    message.ClearField("fine_tune")
    with pytest.raises(InvalidRequest) as exc:
        await stub.SubmitJob(pb.SubmitJobRequest(owner_id="user_1", spec=message))
    assert exc.value.param == "fine_tune.base_model"


async def test_a_succeeded_fine_tune_keeps_its_result_and_names_its_model(
    scheduler: SchedulerApp, stub: Stub, nodes: HandDrivenNodes
) -> None:
    job = await submit_spec(stub, fine_tune_spec())
    output_model = f"ft:smollm2-135m-instruct:my-suffix:{job.id}"
    assert job.output_model_id == output_model and job.result_json == ""
    assert job.spec.fine_tune.base_model == "smollm2-135m-instruct"
    assert dict(job.spec.labels)["openai.request"] == REQUEST
    lease, (node,) = await placed(scheduler, stub, job.id)
    service = scheduler.service
    await service.on_report(AttemptReport(node, job.id, 1, lease, JobStatus.running))
    result = '{"train_loss": 1.25, "steps": 10}'
    await service.on_report(AttemptReport(node, job.id, 1, lease, JobStatus.succeeded, result_json=result))
    done = await stub.GetJob(pb.GetJobRequest(job_id=job.id))
    assert done.status == pb.JOB_STATUS_SUCCEEDED
    assert (done.result_json, done.output_model_id) == (result, output_model)
    listed = await stub.ListJobs(pb.ListJobsRequest(caller_id="user_1", job_type=pb.JOB_TYPE_FINE_TUNE))
    assert [(j.id, j.result_json) for j in listed.jobs] == [(job.id, result)]

    # The facts about it name the model it leaves and the model it came from.
    events = await read_events(scheduler, "job.queued", "job.running", "job.succeeded")
    assert [e.job_id for e in events] == [job.id] * 3
    for event in events:
        assert (event.output_model_id, event.base_model_id) == (output_model, "smollm2-135m-instruct")
        assert event.job_type == "fine_tune"
    assert events[-1].output_path.endswith(f"{job.id}/output")


async def test_a_gang_keeps_rank_0s_result_and_a_late_report_still_brings_it(
    scheduler: SchedulerApp, stub: Stub, nodes: HandDrivenNodes
) -> None:
    service = scheduler.service
    gang = await submit_spec(stub, JobSpec("eval", JobType.evaluation, command="x", nodes=2, gpu_type="cpu"))
    lease, (rank0, rank1) = await placed(scheduler, stub, gang.id)
    await service.on_report(
        AttemptReport(rank0, gang.id, 1, lease, JobStatus.succeeded, result_json='{"r": 0}')
    )
    half = await stub.GetJob(pb.GetJobRequest(job_id=gang.id))
    assert half.status != pb.JOB_STATUS_SUCCEEDED and half.result_json == ""  # not until all succeed
    await service.on_report(
        AttemptReport(rank1, gang.id, 1, lease, JobStatus.succeeded, result_json='{"r": 1}')
    )
    done = await stub.GetJob(pb.GetJobRequest(job_id=gang.id))
    assert done.status == pb.JOB_STATUS_SUCCEEDED and done.result_json == '{"r": 0}'
    assert done.output_model_id == ""
    (event,) = await read_events(scheduler, "job.succeeded")
    assert (event.output_model_id, event.base_model_id, event.job_type) == ("", "", "evaluation")

    # A heartbeat may tell the scheduler of a success (no result) before the report does.
    single = await submit_spec(stub, JobSpec("eval", JobType.evaluation, command="x"))
    lease, (node,) = await placed(scheduler, stub, single.id)
    await service.on_report(AttemptReport(node, single.id, 1, lease, JobStatus.succeeded))
    assert (await stub.GetJob(pb.GetJobRequest(job_id=single.id))).status == pb.JOB_STATUS_SUCCEEDED
    late = AttemptReport(node, single.id, 1, lease, JobStatus.succeeded, result_json='{"bleu": 0.5}')
    await service.on_report(late)
    assert (await stub.GetJob(pb.GetJobRequest(job_id=single.id))).result_json == '{"bleu": 0.5}'

    # A heartbeat that reconciles a success it saw first carries the result itself.
    beaten = await submit_spec(stub, JobSpec("eval", JobType.evaluation, command="x"))
    lease, (node,) = await placed(scheduler, stub, beaten.id)
    seen = AttemptSeen(beaten.id, 1, lease, JobStatus.succeeded, result_json='{"bleu": 0.75}')
    inventory = NodeInventory(node, "127.0.0.1", (SlotPool("cpu", 1),))
    await service.on_heartbeat(Heartbeat(inventory, (seen,)))
    done = await stub.GetJob(pb.GetJobRequest(job_id=beaten.id))
    assert done.status == pb.JOB_STATUS_SUCCEEDED and done.result_json == '{"bleu": 0.75}'


async def test_list_jobs_filters_fine_tunes_and_evaluations(
    scheduler: SchedulerApp, stub: Stub, nodes: HandDrivenNodes
) -> None:
    fine_tune = await submit_spec(stub, fine_tune_spec())
    evaluation = await submit_spec(stub, JobSpec("eval", JobType.evaluation, command="x"))
    custom = await submit_spec(stub, JobSpec("custom", JobType.pytorch, command="x"))
    await submit_spec(stub, fine_tune_spec(), owner="user_2")

    async def ids(job_type: int, caller: str = "user_1") -> list[str]:
        listed = await stub.ListJobs(pb.ListJobsRequest(caller_id=caller, job_type=job_type))
        return [j.id for j in listed.jobs]

    assert await ids(pb.JOB_TYPE_FINE_TUNE) == [fine_tune.id]
    assert await ids(pb.JOB_TYPE_EVALUATION) == [evaluation.id]
    assert await ids(pb.JOB_TYPE_PYTORCH) == [custom.id]
    assert await ids(pb.JOB_TYPE_UNSPECIFIED) == [custom.id, evaluation.id, fine_tune.id]


async def read_events(app: SchedulerApp, *types: str) -> list[events_pb2.JobStateChanged]:
    """The job facts of these types published so far, in order, read back from the stream once
    each type has been (the outbox relays after the commit)."""
    wanted = {f"events.{t}" for t in types}
    js = app.broker.config.connection_state.stream
    found: list[tuple[str, events_pb2.JobStateChanged]] = []
    for _ in range(50):
        sub = await js.subscribe("events.job.>", ordered_consumer=True)
        found.clear()
        with contextlib.suppress(TimeoutError, nats_errors.TimeoutError):
            while True:
                msg = await sub.next_msg(timeout=0.3)
                if msg.subject in wanted:
                    payload = events_pb2.JobStateChanged()
                    assert events_pb2.EventEnvelope.FromString(msg.data).data.Unpack(payload)
                    found.append((msg.subject, payload))
        await sub.unsubscribe()
        if {subject for subject, _ in found} >= wanted:
            break
        await asyncio.sleep(0.1)
    return [payload for _, payload in found]
