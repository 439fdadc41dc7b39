"""A succeeded job's output becomes entries of its owner's model repository (private):

- a platform fine-tune (its `job.succeeded` names the model it leaves, `output_model_id`): the
  merged model in `merged/` under that id, kind fine_tuned, source `job:<id>`, and, when the
  run left a LoRA adapter in `adapter/`, the adapter under `<output_model_id>:adapter`, kind
  adapter, source `job:<id>:adapter`, both with the base model they were trained from;
- an evaluation: nothing (its result is the job's result_json, kept by the scheduler);
- any other job: a fine-tuned model `ft:<job_id>` when the folder holds a Hugging Face model, at
  its root or in `merged/`, else a generic artifact `artifact:<job_id>` that downloads as a tar.

A job's entries are recorded in one transaction, once per job however often the event comes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from suanli_catalog import events
from suanli_catalog.domain import JobOutput, Model, ModelKind, ModelState, Visibility
from suanli_catalog.model_folder import (
    ModelFolderInfo,
    inspect_adapter,
    inspect_artifact,
    inspect_checkpoint,
    list_files,
)
from suanli_catalog.models import ModelRow
from suanli_catalog.models_service import MODEL_ID, apply_ready
from suanli_catalog.repository import ModelRepository, model_from_row
from suanli_common.db import Database
from suanli_common.errors import InvalidRequest
from suanli_common.ids import adapter_model_id
from suanli_common.logging import get_logger
from suanli_common.outbox import Outbox

log = get_logger(__name__)
Clock = Callable[[], datetime]
MAX_OWNER_ID = 40  # the width of catalog_models.owner_id
EVALUATION = "evaluation"  # the job type whose output is a result, not an entry


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class OutputFolder:
    """What a job left behind: a model, an artifact, or (info None) nothing usable and why."""

    kind: ModelKind
    folder: Path
    info: ModelFolderInfo | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class OutputEntry:
    """One entry a job's output becomes, ready to record."""

    model_id: str
    source: str
    output: OutputFolder
    base_model_id: str = ""


def job_source(job_id: str) -> str:
    return f"job:{job_id}"


def adapter_source(job_id: str) -> str:
    return f"job:{job_id}:adapter"


def output_model_id(job_id: str, kind: ModelKind) -> str:
    """`ft:<job_id>` for a fine-tuned model (the name users deploy and chat with), else
    `artifact:<job_id>` (jobs that did not name their output model)."""
    return f"ft:{job_id}" if kind is ModelKind.fine_tuned else f"artifact:{job_id}"


def _missing(path: Path) -> OutputFolder:
    return OutputFolder(
        ModelKind.artifact, path, None, f"the job succeeded but its output folder {path} does not exist"
    )


def inspect_output(path: Path) -> OutputFolder:
    """Classifies a job's output folder (blocking: reads the folder's listing and headers)."""
    if not path.is_dir():
        return _missing(path)
    for candidate in (path, path / "merged"):
        if (candidate / "config.json").is_file():
            try:
                return OutputFolder(ModelKind.fine_tuned, candidate, inspect_checkpoint(candidate))
            except InvalidRequest as exc:  # not a complete model (no tokenizer or weights)
                log.info("job output is not a complete model", folder=str(candidate), reason=exc.message)
    if not list_files(path):
        return OutputFolder(
            ModelKind.artifact,
            path,
            None,
            f"the job succeeded but wrote no files to its output folder {path}",
        )
    return OutputFolder(ModelKind.artifact, path, inspect_artifact(path))


def _checked(kind: ModelKind, folder: Path, inspect: Callable[[Path], ModelFolderInfo]) -> OutputFolder:
    try:
        return OutputFolder(kind, folder, inspect(folder))
    except InvalidRequest as exc:  # recorded as a failed entry: the owner sees why
        return OutputFolder(kind, folder, None, f"the fine-tune's {folder.name}/ is unusable: {exc.message}")


def inspect_fine_tune(path: Path) -> tuple[OutputFolder, OutputFolder | None]:
    """A platform fine-tune's output (blocking): its merged model (`merged/`, or the folder itself
    for a run that saved the model there) and its LoRA adapter when it left one."""
    if not path.is_dir():
        return OutputFolder(ModelKind.fine_tuned, path, None, _missing(path).error), None
    merged = path / "merged" if (path / "merged").is_dir() or not (path / "config.json").is_file() else path
    model = _checked(ModelKind.fine_tuned, merged, inspect_checkpoint)
    adapter_folder = path / "adapter"
    # The same check the model repository runs on an adapter registered by hand.
    adapter = (
        _checked(ModelKind.adapter, adapter_folder, inspect_adapter)
        if (adapter_folder / "adapter_config.json").is_file()
        else None
    )
    return model, adapter


def plan_entries(job: JobOutput) -> list[OutputEntry]:
    """The entries a job's output becomes (blocking: reads the folder)."""
    path = Path(job.output_path)
    if not job.output_model_id:
        output = inspect_output(path)
        return [OutputEntry(output_model_id(job.job_id, output.kind), job_source(job.job_id), output)]
    model, adapter = inspect_fine_tune(path)
    entries = [OutputEntry(job.output_model_id, job_source(job.job_id), model, job.base_model_id)]
    if adapter is not None:
        entries.append(
            OutputEntry(
                adapter_model_id(job.output_model_id), adapter_source(job.job_id), adapter, job.base_model_id
            )
        )
    return entries


def _acceptable(job: JobOutput) -> bool:
    """Whether the event can name entries at all (redelivering would not change that)."""
    ids = (
        [job.output_model_id, adapter_model_id(job.output_model_id)]
        if job.output_model_id
        else [output_model_id(job.job_id, ModelKind.artifact)]
    )
    return 0 < len(job.owner_id) <= MAX_OWNER_ID and all(MODEL_ID.match(i) for i in ids)


class JobOutputs:
    """Registers job outputs. A job without an output path is skipped (logged); an output path
    that is missing or empty is recorded as a `failed` entry whose error says so, so that the
    owner sees why no download appeared."""

    def __init__(self, db: Database, outbox: Outbox, clock: Clock = utc_now) -> None:
        self._db = db
        self._outbox = outbox
        self._clock = clock

    async def register(self, job: JobOutput) -> list[Model]:
        """The new entries; none when there is nothing to register or it is registered already."""
        if job.job_type == EVALUATION:
            log.info(
                "evaluation job succeeded: its result is the job's, nothing to register", job_id=job.job_id
            )
            return []
        if not job.output_path:
            log.info("job succeeded without an output path: nothing to register", job_id=job.job_id)
            return []
        if not _acceptable(job):
            # Redelivering would not make it valid: logged and acknowledged.
            log.warning(
                "job output event refused",
                job_id=job.job_id,
                owner_id=job.owner_id,
                output_model_id=job.output_model_id,
            )
            return []
        # A job's entries are recorded together, so its first entry tells whether it is done.
        if await self._registered(job_source(job.job_id)):
            log.info("job output already registered", job_id=job.job_id)
            return []
        entries = await asyncio.to_thread(plan_entries, job)
        try:
            models = await self._record(job, entries)
        except IntegrityError:  # a concurrent delivery of the same event won the insert
            models = []
        if not models:
            log.info("job output already registered", job_id=job.job_id)
        for model in models:
            log.info(
                "job output registered",
                job_id=job.job_id,
                model_id=model.id,
                kind=model.kind.value,
                state=model.state.value,
            )
        return models

    async def _registered(self, source: str) -> bool:
        async with self._db.session() as session:
            return await ModelRepository(session).by_source(source) is not None

    async def _record(self, job: JobOutput, entries: list[OutputEntry]) -> list[Model]:
        models: list[Model] = []
        async with self._db.session() as session:
            repo = ModelRepository(session)
            base_row = await repo.get_row(job.base_model_id) if job.base_model_id else None
            # An adapter takes its base's architecture, context length and chat template.
            base = model_from_row(base_row) if base_row is not None else None
            for entry in entries:
                if await repo.by_source(entry.source) is not None:  # registered while the folder was read
                    continue
                row = self._row(job, entry, base)
                await repo.add(row)
                model = model_from_row(row)
                if model.state is ModelState.ready:
                    self._outbox.add(
                        session, events.MODEL_REGISTERED, model.id, events.model_registered(model)
                    )
                models.append(model)
        return models

    def _row(self, job: JobOutput, entry: OutputEntry, base: Model | None) -> ModelRow:
        now = self._clock()
        output = entry.output
        row = ModelRow(
            id=entry.model_id,
            owner_id=job.owner_id,
            kind=output.kind.value,
            visibility=Visibility.private.value,
            source=entry.source,
            base_model_id=entry.base_model_id,
            is_default=False,
            created_at=now,
        )
        if output.info is None:
            row.state = ModelState.failed.value
            row.path = str(output.folder)
            row.architecture = ""
            row.parameter_count = 0
            row.context_length = 0
            row.chat_template = ""
            row.size_bytes = 0
            row.error = output.error
            row.updated_at = now
        else:
            apply_ready(row, output.folder, output.info, base, now)
        return row
