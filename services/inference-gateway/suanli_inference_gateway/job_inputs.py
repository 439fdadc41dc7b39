"""What fine-tunes and evaluations share: their inputs, checked against the catalog before a job is
submitted (a model that can be loaded for training or generation, a validated dataset file), and
how their jobs' statuses are shown."""

from __future__ import annotations

from typing import Literal

from suanli_common.errors import InvalidRequest, NotFound
from suanli_inference_gateway.clients.catalog import CatalogApi, Model, StoredFile
from suanli_inference_gateway.clients.scheduler import JobStatus

LOADABLE_KINDS = ("base", "fine_tuned")  # whole Hugging Face models (adapters need their base)
SERVABLE_KINDS = (*LOADABLE_KINDS, "embedding")  # what a deployment serves
DATASET_FORMATS = ("openai_messages", "alpaca", "sharegpt")

PublicStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
# How fine-tunes and evaluations show a scheduler job's status (OpenAI's fine-tuning values).
PUBLIC_STATUS: dict[JobStatus, PublicStatus] = {
    JobStatus.queued: "queued",
    JobStatus.preparing: "running",  # staging the model and data on the node
    JobStatus.running: "running",
    JobStatus.succeeded: "succeeded",
    JobStatus.failed: "failed",
    JobStatus.timed_out: "failed",
    JobStatus.cancelled: "cancelled",
}


async def require_model(
    catalog: CatalogApi,
    caller_id: str,
    model_id: str,
    param: str,
    kinds: tuple[str, ...] = LOADABLE_KINDS,
) -> Model:
    try:
        model = await catalog.get_model(caller_id, model_id)
    except NotFound:
        raise InvalidRequest(
            f"the model {model_id!r} does not exist or you do not have access to it",
            param=param,
            code="model_not_found",
        ) from None
    if model.kind not in kinds or model.state != "ready":
        raise InvalidRequest(
            f"the model {model.id!r} cannot be used here (kind {model.kind}, {model.state})", param=param
        )
    return model


async def require_dataset(catalog: CatalogApi, caller_id: str, file_id: str, param: str) -> StoredFile:
    try:
        stored = await catalog.get_file(caller_id, file_id)
    except NotFound:
        raise InvalidRequest(f"no file {file_id!r} exists", param=param, code="file_not_found") from None
    if stored.purpose != "fine-tune":
        raise InvalidRequest(f"file {file_id} has purpose {stored.purpose!r}, not 'fine-tune'", param=param)
    if stored.status != "processed" or stored.validation is None:
        detail = f": {stored.status_details}" if stored.status_details else ""
        raise InvalidRequest(
            f"file {file_id} did not pass validation{detail}", param=param, code="invalid_file"
        )
    if stored.validation.format not in DATASET_FORMATS:
        raise InvalidRequest(
            f"file {file_id} is a {stored.validation.format} dataset; jobs read "
            f"{', '.join(DATASET_FORMATS)} files",
            param=param,
            code="invalid_file",
        )
    return stored
