"""What the catalog deals in: models and stored files, as plain dataclasses (no SQL, no protobuf)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

SYSTEM_OWNER = "system"


class ModelKind(enum.StrEnum):
    base = "base"
    fine_tuned = "fine_tuned"
    adapter = "adapter"
    embedding = "embedding"
    artifact = "artifact"  # a job's output that is not a model: downloadable, never deployed


class ModelState(enum.StrEnum):
    registering = "registering"
    ready = "ready"
    failed = "failed"


class Visibility(enum.StrEnum):
    private = "private"
    public = "public"


class FilePurpose(enum.StrEnum):
    fine_tune = "fine-tune"
    assistants = "assistants"


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    owner_id: str
    kind: ModelKind
    state: ModelState
    visibility: Visibility
    source: str
    path: str
    architecture: str
    parameter_count: int
    context_length: int
    chat_template: str
    base_model_id: str
    size_bytes: int
    is_default: bool
    error: str
    created_at: datetime

    def visible_to(self, caller_id: str) -> bool:
        return self.visibility is Visibility.public or (bool(caller_id) and caller_id == self.owner_id)


@dataclass(frozen=True, slots=True)
class JobOutput:
    """What the catalog needs of a succeeded job (from its `job.succeeded` event)."""

    job_id: str
    owner_id: str
    output_path: str  # the job's model save path; "" when the job declared none
    job_type: str = ""  # "pytorch", "mpi", "fine_tune", "evaluation"
    output_model_id: str = ""  # fine-tunes: the id their merged model is registered under
    base_model_id: str = ""  # fine-tunes: the model they were trained from


@dataclass(frozen=True, slots=True)
class DatasetStats:
    format: str
    examples: int
    tokens: int
    tokenizer: str


@dataclass(frozen=True, slots=True)
class StoredFile:
    id: str
    owner_id: str
    filename: str
    purpose: FilePurpose
    bytes: int
    storage_key: str
    status: str  # "processed" (what OpenAI reports for a usable file) | "error"
    status_details: str
    dataset: DatasetStats | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ArtifactUrl:
    """Where a stored artifact can be read without the catalog: a file:// URL on the local store,
    a presigned URL on S3, valid until `expires_at`."""

    url: str
    expires_at: datetime
