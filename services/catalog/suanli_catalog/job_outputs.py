"""A succeeded job's output becomes an entry of its owner's model repository (private, source
`job:<job_id>`): a fine-tuned model when the folder holds a Hugging Face model, at its root or in
`merged/` (where the platform's fine-tunes write the merged model), else a generic artifact that
downloads as a tar. Registered once per job, however often the event is delivered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from suanli_catalog import events
from suanli_catalog.domain import JobOutput, Model, ModelKind, ModelState, Visibility
from suanli_catalog.model_folder import ModelFolderInfo, inspect_artifact, inspect_checkpoint, list_files
from suanli_catalog.models import ModelRow
from suanli_catalog.models_service import MODEL_ID, apply_ready
from suanli_catalog.repository import ModelRepository, model_from_row
from suanli_common.db import Database
from suanli_common.errors import InvalidRequest
from suanli_common.logging import get_logger
from suanli_common.outbox import Outbox

log = get_logger(__name__)
Clock = Callable[[], datetime]
MAX_OWNER_ID = 40  # the width of catalog_models.owner_id


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class OutputFolder:
    """What a job left behind: a model, an artifact, or (info None) nothing usable and why."""

    kind: ModelKind
    folder: Path
    info: ModelFolderInfo | None
    error: str = ""


def job_source(job_id: str) -> str:
    return f"job:{job_id}"


def output_model_id(job_id: str, kind: ModelKind) -> str:
    """`ft:<job_id>` for a fine-tuned model (the name users deploy and chat with), else
    `artifact:<job_id>`."""
    return f"ft:{job_id}" if kind is ModelKind.fine_tuned else f"artifact:{job_id}"


def inspect_output(path: Path) -> OutputFolder:
    """Classifies a job's output folder (blocking: reads the folder's listing and headers)."""
    if not path.is_dir():
        return OutputFolder(
            ModelKind.artifact, path, None, f"the job succeeded but its output folder {path} does not exist"
        )
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


class JobOutputs:
    """Registers job outputs. A job without an output path is skipped (logged); an output path
    that is missing or empty is recorded as a `failed` entry whose error says so, so that the
    owner sees why no download appeared."""

    def __init__(self, db: Database, outbox: Outbox, clock: Clock = utc_now) -> None:
        self._db = db
        self._outbox = outbox
        self._clock = clock

    async def register(self, job: JobOutput) -> Model | None:
        """The new entry; None when there is nothing to register or it is registered already."""
        if not job.output_path:
            log.info("job succeeded without an output path: nothing to register", job_id=job.job_id)
            return None
        if not (
            0 < len(job.owner_id) <= MAX_OWNER_ID
            and MODEL_ID.match(output_model_id(job.job_id, ModelKind.artifact))
        ):
            # Redelivering would not make it valid: logged and acknowledged.
            log.warning("job output event refused", job_id=job.job_id, owner_id=job.owner_id)
            return None
        source = job_source(job.job_id)
        if await self._registered(source):
            log.info("job output already registered", job_id=job.job_id)
            return None
        output = await asyncio.to_thread(inspect_output, Path(job.output_path))
        try:
            model = await self._record(job, source, output)
        except IntegrityError:  # a concurrent delivery of the same event won the insert
            model = None
        if model is None:
            log.info("job output already registered", job_id=job.job_id)
            return None
        log.info(
            "job output registered",
            job_id=job.job_id,
            model_id=model.id,
            kind=model.kind.value,
            state=model.state.value,
        )
        return model

    async def _registered(self, source: str) -> bool:
        async with self._db.session() as session:
            return await ModelRepository(session).by_source(source) is not None

    async def _record(self, job: JobOutput, source: str, output: OutputFolder) -> Model | None:
        async with self._db.session() as session:
            repo = ModelRepository(session)
            if await repo.by_source(source) is not None:  # registered while the folder was read
                return None
            now = self._clock()
            row = ModelRow(
                id=output_model_id(job.job_id, output.kind),
                owner_id=job.owner_id,
                kind=output.kind.value,
                visibility=Visibility.private.value,
                source=source,
                base_model_id="",
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
                apply_ready(row, output.folder, output.info, None, now)
            await repo.add(row)
            model = model_from_row(row)
            if model.state is ModelState.ready:
                self._outbox.add(session, events.MODEL_REGISTERED, model.id, events.model_registered(model))
        return model
