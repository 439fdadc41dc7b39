"""What the catalog publishes (through its outbox, after the commit): `model.registered` when a
model reaches `ready`, `dataset.validated` when a fine-tune file is validated and stored; and
what it consumes: `job.succeeded`, whose output folder it registers (see `job_outputs`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faststream.nats import NatsBroker

from suanli_catalog.domain import JobOutput, Model, StoredFile
from suanli_common.bus import Event, subscribe_events
from suanli_common.proto.suanli.v1 import events_pb2

if TYPE_CHECKING:
    from suanli_catalog.job_outputs import JobOutputs

MODEL_REGISTERED = "model.registered"
DATASET_VALIDATED = "dataset.validated"
JOB_SUCCEEDED = "job.succeeded"
# One durable consumer shared by the catalog's instances: each event is handled by one of them,
# and a restarted catalog resumes where it stopped (handling is idempotent: JetStream redelivers).
JOB_OUTPUTS_CONSUMER = "catalog-job-outputs"


def model_registered(model: Model) -> events_pb2.ModelRegistered:
    return events_pb2.ModelRegistered(
        model_id=model.id,
        owner_id=model.owner_id,
        kind=model.kind.value,
        source=model.source,
        architecture=model.architecture,
        visibility=model.visibility.value,
        base_model_id=model.base_model_id,
        path=model.path,
    )


def dataset_validated(file: StoredFile) -> events_pb2.DatasetValidated:
    dataset = file.dataset
    return events_pb2.DatasetValidated(
        file_id=file.id,
        owner_id=file.owner_id,
        purpose=file.purpose.value,
        format=dataset.format if dataset else "",
        examples=dataset.examples if dataset else 0,
        tokens=dataset.tokens if dataset else 0,
        bytes=file.bytes,
    )


def subscribe_job_outputs(broker: NatsBroker, outputs: JobOutputs) -> None:
    """Registers each succeeded job's output (before `broker.start()`)."""

    async def on_job_succeeded(event: Event[events_pb2.JobStateChanged]) -> None:
        job = event.data
        await outputs.register(
            JobOutput(
                job_id=job.job_id,
                owner_id=job.owner_id,
                output_path=job.output_path,
                job_type=job.job_type,
                output_model_id=job.output_model_id,
                base_model_id=job.base_model_id,
            )
        )

    subscribe_events(
        broker, JOB_SUCCEEDED, events_pb2.JobStateChanged, on_job_succeeded, durable=JOB_OUTPUTS_CONSUMER
    )
