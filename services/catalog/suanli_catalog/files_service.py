"""Datasets and documents as OpenAI files: uploads stream to the artifact store under a size
limit, fine-tune files are validated on the way in (a LLaMA-Factory archive once stored), and
only their owner can see them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from suanli_catalog import events
from suanli_catalog.domain import ArtifactUrl, FilePurpose, ModelState, StoredFile
from suanli_catalog.llamafactory import FineTuneIntake, stored_file, validate_archive
from suanli_catalog.models import FileRow
from suanli_catalog.models_service import ModelsService
from suanli_catalog.repository import FileRepository, file_from_row
from suanli_catalog.storage import ArtifactStore
from suanli_catalog.validation import (
    ByteEstimate,
    DatasetReport,
    DatasetValidator,
    TokenCounter,
    TokenizerCounter,
)
from suanli_common.db import Database
from suanli_common.errors import InvalidRequest, NotFound, PayloadTooLarge
from suanli_common.ids import new_id
from suanli_common.logging import get_logger
from suanli_common.outbox import Outbox

log = get_logger(__name__)
Clock = Callable[[], datetime]
OWNER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
BAD_FILENAME_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")


def utc_now() -> datetime:
    return datetime.now(UTC)


def _not_found(file_id: str) -> NotFound:
    return NotFound(f"file '{file_id}' not found", code="file_not_found", param="file_id")


def check_filename(filename: str) -> str:
    """A plain file name: no directories, no '..', no control characters (it is shown back to
    users and used as a download name, never as a storage path)."""
    name = filename.strip()
    if not name:
        raise InvalidRequest("the file needs a name", param="file", code="invalid_filename")
    if BAD_FILENAME_CHARS.search(name) or name in (".", "..") or name.startswith(".."):
        raise InvalidRequest(
            f"invalid file name {filename!r}: give a plain name, without '/', '\\\\' or '..'",
            param="file",
            code="invalid_filename",
        )
    if len(name.encode()) > 255:
        raise InvalidRequest("the file name is longer than 255 bytes", param="file", code="invalid_filename")
    return name


class FilesService:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        store: ArtifactStore,
        models: ModelsService,
        *,
        max_upload_bytes: int,
        url_ttl_s: int = 3600,
        clock: Clock = utc_now,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._store = store
        self._models = models
        self._max_bytes = max_upload_bytes
        self._url_ttl_s = url_ttl_s
        self._clock = clock
        self._counters: dict[str, TokenCounter] = {}

    async def token_counter(self, caller_id: str, model_id: str = "") -> TokenCounter:
        """The tokenizer of the target model (default: the default chat model); a byte
        estimate while the default model is not ready. A named model must be usable."""
        model = (
            await self._models.get(caller_id, model_id) if model_id else await self._models.default_model()
        )
        if model is None or model.state is not ModelState.ready:
            if model_id:
                raise InvalidRequest(f"model '{model_id}' is not ready", param="model")
            return ByteEstimate()
        tokenizer_json = Path(model.path) / "tokenizer.json"
        if not tokenizer_json.is_file():
            if model_id:
                raise InvalidRequest(f"model '{model_id}' has no tokenizer.json to count with", param="model")
            return ByteEstimate()
        key = f"{model.id}:{tokenizer_json}"
        if key not in self._counters:
            self._counters[key] = await asyncio.to_thread(TokenizerCounter, model.id, tokenizer_json)
        return self._counters[key]

    async def upload(
        self,
        *,
        owner_id: str,
        filename: str,
        purpose: str,
        chunks: AsyncIterable[bytes],
        model_id: str = "",
    ) -> StoredFile:
        if not OWNER_ID.match(owner_id):
            raise InvalidRequest("a valid caller_id is required", param="caller_id")
        try:
            kind = FilePurpose(purpose)
        except ValueError:
            raise InvalidRequest(
                f"purpose {purpose!r} is not supported: use 'fine-tune' or 'assistants'", param="purpose"
            ) from None
        name = check_filename(filename)
        counter = await self.token_counter(owner_id, model_id) if kind is FilePurpose.fine_tune else None
        intake = FineTuneIntake(DatasetValidator(counter)) if counter is not None else None
        file_id = new_id("file", sep="-")
        key = f"files/{owner_id}/{file_id}"

        async def limited() -> AsyncIterator[bytes]:
            size = 0
            async for chunk in chunks:
                size += len(chunk)
                if size > self._max_bytes:
                    raise PayloadTooLarge(
                        f"the file is larger than the limit of {self._max_bytes} bytes",
                        param="file",
                        code="file_too_large",
                    )
                if intake is not None:
                    await asyncio.to_thread(intake.feed, chunk)
                yield chunk

        stored = False
        try:
            size = await self._store.write(key, limited())
            stored = True
            report: DatasetReport | None = None
            if intake is not None and counter is not None:
                report = await asyncio.to_thread(intake.finish)
                if intake.archive is not None:  # read back from the store: zip and tar need to seek
                    async with stored_file(self._store, key) as path:
                        report = await asyncio.to_thread(
                            validate_archive, path, intake.archive, counter, max_bytes=self._max_bytes
                        )
                assert report is not None
                if not report.valid:
                    raise InvalidRequest(
                        f"{name} is not a valid fine-tune file: {report.summary()}",
                        param="file",
                        code="invalid_file",
                    )
            elif size == 0:
                raise InvalidRequest("the file is empty", param="file", code="invalid_file")
            return await self._record(file_id, owner_id, name, kind, size, key, report)
        except BaseException:
            if stored:  # no orphan blob: a refused or unrecorded upload is removed
                await asyncio.shield(self._store.delete(key))
            raise

    async def _record(
        self,
        file_id: str,
        owner_id: str,
        filename: str,
        purpose: FilePurpose,
        size: int,
        key: str,
        report: DatasetReport | None,
    ) -> StoredFile:
        async with self._db.session() as session:
            row = FileRow(
                id=file_id,
                owner_id=owner_id,
                filename=filename,
                purpose=purpose.value,
                bytes=size,
                storage_key=key,
                status="processed",
                status_details="",
                dataset_format=report.format if report else "",
                examples=report.examples if report else 0,
                tokens=report.tokens if report else 0,
                tokenizer=report.tokenizer if report else "",
                created_at=self._clock(),
            )
            await FileRepository(session).add(row)
            stored = file_from_row(row)
            if report is not None:
                self._outbox.add(session, events.DATASET_VALIDATED, file_id, events.dataset_validated(stored))
        log.info("file stored", file_id=file_id, purpose=purpose.value, bytes=size)
        return stored

    async def get(self, caller_id: str, file_id: str) -> StoredFile:
        async with self._db.session() as session:
            row = await FileRepository(session).owned(caller_id, file_id)
        if row is None:
            raise _not_found(file_id)
        return file_from_row(row)

    async def list_owned(self, caller_id: str, purpose: str = "") -> list[StoredFile]:
        async with self._db.session() as session:
            rows = await FileRepository(session).list_owned(caller_id, purpose)
        return [file_from_row(r) for r in rows]

    async def delete(self, caller_id: str, file_id: str) -> StoredFile:
        async with self._db.session() as session:
            repo = FileRepository(session)
            row = await repo.owned(caller_id, file_id)
            if row is None:
                raise _not_found(file_id)
            stored = file_from_row(row)
            await repo.delete(row)
        await self._store.delete(stored.storage_key)  # after the commit: a row never points nowhere
        return stored

    async def content(self, caller_id: str, file_id: str) -> AsyncIterator[bytes]:
        stored = await self.get(caller_id, file_id)
        async for chunk in self._store.read(stored.storage_key):
            yield chunk

    async def url(self, caller_id: str, file_id: str) -> ArtifactUrl:
        """Where the file's owner (or a job acting for them) reads its bytes without the catalog.
        Authorised like `get`: another's file is NotFound."""
        stored = await self.get(caller_id, file_id)
        # Taken before the URL is signed, so the stated expiry is never later than the real one.
        expires_at = self._clock() + timedelta(seconds=self._url_ttl_s)
        url = await self._store.url(stored.storage_key, self._url_ttl_s)
        return ArtifactUrl(url=url, expires_at=expires_at)
