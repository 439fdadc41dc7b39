"""What the catalog publishes (through its outbox, after the commit): `model.registered` when a
model reaches `ready`, `dataset.validated` when a fine-tune file is validated and stored."""

from __future__ import annotations

from suanli_catalog.domain import Model, StoredFile
from suanli_common.proto.suanli.v1 import events_pb2

MODEL_REGISTERED = "model.registered"
DATASET_VALIDATED = "dataset.validated"


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
