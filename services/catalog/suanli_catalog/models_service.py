"""The model repository: registering checkpoints and adapters (checked before they are `ready`),
who may see them, and streaming their files out."""

from __future__ import annotations

import asyncio
import re
import tarfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

from suanli_catalog import events
from suanli_catalog.domain import Model, ModelKind, ModelState, Visibility
from suanli_catalog.model_folder import (
    ModelFolderInfo,
    inspect_adapter,
    inspect_artifact,
    inspect_checkpoint,
    list_files,
)
from suanli_catalog.models import ModelRow
from suanli_catalog.repository import ModelRepository, model_from_row
from suanli_common.db import Database
from suanli_common.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from suanli_common.ids import new_id
from suanli_common.outbox import Outbox

Clock = Callable[[], datetime]
# Up to the width of catalog_models.id: a fine-tune's id holds its base's id, its suffix and its
# job id (`ft:<base>:<suffix>:<job>`, and `...:adapter` for its adapter).
MODEL_ID_MAX = 255
MODEL_ID = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._:/-]{{0,{MODEL_ID_MAX - 1}}}$")
READ_CHUNK = 256 * 1024


def utc_now() -> datetime:
    return datetime.now(UTC)


def _not_found(model_id: str) -> NotFound:
    return NotFound(f"model '{model_id}' not found", code="model_not_found", param="model")


def resolve_source(source: str, path: str) -> Path:
    """The local folder a source names: `path:/dir` or `/dir`, `hf:org/name` from the local
    Hugging Face cache (nothing is downloaded), `job:<id>` with the folder given in `path`."""
    if source.startswith("path:") or source.startswith("/"):
        return Path(source.removeprefix("path:")).expanduser()
    if source.startswith("hf:"):
        from huggingface_hub import snapshot_download

        repo = source.removeprefix("hf:")
        try:
            return Path(snapshot_download(repo, local_files_only=True))
        except Exception:
            raise InvalidRequest(
                f"'{repo}' is not in the local Hugging Face cache (hub downloads are off)",
                param="source",
                code="invalid_model_path",
            ) from None
    if source.startswith("job:"):
        if not path:
            raise InvalidRequest("a job's model needs the folder of its output in 'path'", param="path")
        return Path(path)
    raise InvalidRequest(
        f"unknown model source {source!r}: use 'path:/dir', 'hf:org/name' or 'job:<id>'", param="source"
    )


def apply_ready(
    row: ModelRow, folder: Path, info: ModelFolderInfo, base: Model | None, now: datetime
) -> None:
    """Marks the row `ready` with what its checked folder says (an adapter inherits its base's)."""
    row.state = ModelState.ready.value
    row.path = str(folder)
    row.architecture = info.architecture or (base.architecture if base else "")
    row.parameter_count = info.parameter_count
    row.context_length = info.context_length or (base.context_length if base else 0)
    row.chat_template = info.chat_template or (base.chat_template if base else "")
    row.size_bytes = info.size_bytes
    row.error = ""
    row.updated_at = now


class ModelsService:
    def __init__(self, db: Database, outbox: Outbox, clock: Clock = utc_now) -> None:
        self._db = db
        self._outbox = outbox
        self._clock = clock

    async def register(
        self,
        *,
        owner_id: str,
        source: str,
        model_id: str = "",
        kind: ModelKind = ModelKind.base,
        visibility: Visibility = Visibility.private,
        base_model_id: str = "",
        path: str = "",
    ) -> Model:
        """Checks the folder first; a model that is not one leaves no row behind."""
        if not owner_id:
            raise InvalidRequest("owner_id is required", param="owner_id")
        model_id = model_id or new_id("model")
        if not MODEL_ID.match(model_id):
            raise InvalidRequest(f"invalid model id {model_id!r}", param="id", code="invalid_model_id")
        folder = resolve_source(source, path).resolve()
        base: Model | None = None
        if kind is ModelKind.adapter:
            if not base_model_id:
                raise InvalidRequest("an adapter needs its base_model_id", param="base_model_id")
            base = await self.get(owner_id, base_model_id)
            info = await asyncio.to_thread(inspect_adapter, folder)
        elif kind is ModelKind.artifact:
            info = await asyncio.to_thread(inspect_artifact, folder)
        else:
            info = await asyncio.to_thread(inspect_checkpoint, folder)
            if base_model_id:
                await self.get(owner_id, base_model_id)
        async with self._db.session() as session:
            repo = ModelRepository(session)
            if await repo.get_row(model_id) is not None:
                raise Conflict(f"model id '{model_id}' is taken", param="id", code="model_exists")
            now = self._clock()
            row = ModelRow(
                id=model_id,
                owner_id=owner_id,
                kind=kind.value,
                visibility=visibility.value,
                source=source,
                base_model_id=base_model_id,
                is_default=False,
                created_at=now,
            )
            apply_ready(row, folder, info, base, now)
            await repo.add(row)
            model = model_from_row(row)
            self._outbox.add(session, events.MODEL_REGISTERED, model.id, events.model_registered(model))
        return model

    # -- seed models: a row in `registering` first, `ready` once their folder is built --

    async def begin_seed(
        self, model_id: str, source: str, *, is_default: bool, kind: str = ModelKind.base.value
    ) -> Model:
        """The seed model's row: created `registering` the first time, left as it is later."""
        async with self._db.session() as session:
            repo = ModelRepository(session)
            row = await repo.get_row(model_id)
            if row is None:
                now = self._clock()
                row = ModelRow(
                    id=model_id,
                    owner_id="system",
                    kind=ModelKind(kind).value,
                    state=ModelState.registering.value,
                    visibility=Visibility.public.value,
                    source=source,
                    path="",
                    architecture="",
                    parameter_count=0,
                    context_length=0,
                    chat_template="",
                    base_model_id="",
                    size_bytes=0,
                    is_default=is_default,
                    error="",
                    created_at=now,
                    updated_at=now,
                )
                await repo.add(row)
            elif row.state == ModelState.failed.value:
                row.state = ModelState.registering.value  # a later start tries again
                row.error = ""
            return model_from_row(row)

    async def finish_seed(self, model_id: str, folder: Path) -> Model:
        info = await asyncio.to_thread(inspect_checkpoint, folder)
        async with self._db.session() as session:
            row = await ModelRepository(session).get_row(model_id)
            if row is None:
                raise _not_found(model_id)
            was_ready = row.state == ModelState.ready.value and row.path == str(folder)
            apply_ready(row, folder, info, None, self._clock())
            model = model_from_row(row)
            if not was_ready:
                self._outbox.add(session, events.MODEL_REGISTERED, model.id, events.model_registered(model))
        return model

    async def fail_seed(self, model_id: str, error: str) -> None:
        async with self._db.session() as session:
            row = await ModelRepository(session).get_row(model_id)
            if row is not None:
                row.state = ModelState.failed.value
                row.error = error[:4000]
                row.updated_at = self._clock()

    # -- reading --

    async def get(self, caller_id: str, model_id: str) -> Model:
        """A model the caller may see; another user's private model is NotFound, never
        PermissionDenied, so its existence does not leak."""
        async with self._db.session() as session:
            row = await ModelRepository(session).get_row(model_id)
        if row is None or not model_from_row(row).visible_to(caller_id):
            raise _not_found(model_id)
        return model_from_row(row)

    async def list_visible(self, caller_id: str) -> list[Model]:
        async with self._db.session() as session:
            rows = await ModelRepository(session).visible_to(caller_id)
        return [model_from_row(r) for r in rows]

    async def default_model(self) -> Model | None:
        async with self._db.session() as session:
            row = await ModelRepository(session).default_model()
        return model_from_row(row) if row else None

    async def delete(self, caller_id: str, model_id: str) -> Model:
        """Forgets the model; its files stay where they are (they may be a user's own folder)."""
        async with self._db.session() as session:
            repo = ModelRepository(session)
            row = await repo.get_row(model_id)
            if row is None or not model_from_row(row).visible_to(caller_id):
                raise _not_found(model_id)
            if row.owner_id != caller_id:
                raise PermissionDenied(f"model '{model_id}' belongs to {row.owner_id}", param="model")
            model = model_from_row(row)
            await repo.delete(row)
        return model

    async def _ready_folder(self, caller_id: str, model_id: str) -> Path:
        model = await self.get(caller_id, model_id)
        if model.state is not ModelState.ready:
            raise InvalidRequest(f"model '{model_id}' is {model.state.value}, not ready", param="model")
        return Path(model.path)

    async def files(self, caller_id: str, model_id: str) -> list[tuple[str, int]]:
        folder = await self._ready_folder(caller_id, model_id)
        return await asyncio.to_thread(list_files, folder)

    async def download(self, caller_id: str, model_id: str, path: str = "") -> AsyncIterator[bytes]:
        """One file's bytes, or (no path) the folder as an uncompressed tar built on the fly."""
        folder = await self._ready_folder(caller_id, model_id)
        listing = await asyncio.to_thread(list_files, folder)
        if path:
            if path not in {name for name, _ in listing}:
                raise NotFound(f"model '{model_id}' has no file {path!r}", param="path")
            async for chunk in _read(folder / path):
                yield chunk
            return
        for name, size in listing:
            info = tarfile.TarInfo(f"{model_id.replace('/', '_')}/{name}")
            info.size = size
            info.mode = 0o644
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            async for chunk in _read(folder / name):
                yield chunk
            if size % tarfile.BLOCKSIZE:
                yield b"\0" * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE)
        yield b"\0" * (2 * tarfile.BLOCKSIZE)


async def _read(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, READ_CHUNK):
            yield chunk
    finally:
        handle.close()
