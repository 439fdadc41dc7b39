"""Fine-tune datasets uploaded as an archive (.zip, .tar, .tar.gz) in LLaMA-Factory's layout: a
`dataset_info.json` naming the data file, its formatting (alpaca or sharegpt) and how its columns
and role tags are called. The archive is validated once stored, member by member, in bounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import posixpath
import re
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import unquote, urlparse

from suanli_catalog.storage import ArtifactStore
from suanli_catalog.validation import (
    SAMPLING,
    DatasetReport,
    DatasetValidator,
    RowCheck,
    RowError,
    Sampling,
    TokenCounter,
    ValidationIssue,
)

ArchiveKind = Literal["zip", "tar"]
Formatting = Literal["alpaca", "sharegpt"]
INFO_NAME = "dataset_info.json"
INFO_LIMIT = 1024 * 1024  # dataset_info.json is read whole
SNIFF_BYTES = 512  # one tar header block: enough to tell every accepted kind apart
READ_CHUNK = 256 * 1024
DATA_SUFFIXES = (".json", ".jsonl")
HUB_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output"}
SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
# What a damaged, encrypted or oddly compressed archive raises while it is read.
ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
)


class ArchiveRefused(ValueError):
    """The archive cannot be used as a dataset; the message says why, for the uploader."""


def archive_kind(head: bytes) -> ArchiveKind | None:
    """The archive the first bytes of an upload start, if any (a JSON or JSONL file starts with
    neither signature). A gzip stream is taken as .tar.gz: nothing else compressed is accepted."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b") or head[257:262] == b"ustar":
        return "tar"
    return None


class FineTuneIntake:
    """Where a fine-tune upload's bytes go while it streams in: the first bytes are held until
    they tell an archive from a data file; a data file goes on to the streaming validator, an
    archive is validated only once stored (a zip's index is at its end)."""

    def __init__(self, validator: DatasetValidator) -> None:
        self._validator = validator
        self._head = bytearray()
        self._decided = False
        self.archive: ArchiveKind | None = None

    def _decide(self) -> None:
        self._decided = True
        self.archive = archive_kind(bytes(self._head))
        if self.archive is None:
            self._validator.feed(bytes(self._head))
        self._head = bytearray()

    def feed(self, chunk: bytes) -> None:
        if self._decided:
            if self.archive is None:
                self._validator.feed(chunk)
            return
        self._head += chunk
        if len(self._head) >= SNIFF_BYTES:
            self._decide()

    def finish(self) -> DatasetReport | None:
        """The data file's report; None for an archive (see `validate_archive`)."""
        if not self._decided:
            self._decide()
        return None if self.archive else self._validator.finish()


# --- dataset_info.json -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatasetEntry:
    """One dataset of a dataset_info.json, with LLaMA-Factory's defaults filled in."""

    name: str
    file_name: str
    formatting: Formatting
    columns: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def format(self) -> str:
        return f"llamafactory:{self.formatting}"

    def row_check(self) -> RowCheck:
        if self.formatting == "alpaca":
            return AlpacaRows(self.format, self.columns).check
        return ShareGptRows(self.format, self.columns, self.tags).check


def _names(value: Any, what: str, entry: str) -> dict[str, str]:
    """A `columns` or `tags` object: names to strings (a null leaves the default)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ArchiveRefused(f"dataset '{entry}' in {INFO_NAME}: '{what}' must be an object")
    names: dict[str, str] = {}
    for key, name in value.items():
        if name is None:
            continue
        if not isinstance(name, str) or not name:
            raise ArchiveRefused(f"dataset '{entry}' in {INFO_NAME}: {what}.{key} must be a non-empty string")
        names[key] = name
    return names


def parse_dataset_info(data: bytes) -> DatasetEntry:
    """The first dataset of a dataset_info.json (the one the archive is for)."""
    try:
        info = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchiveRefused(f"{INFO_NAME} is not valid JSON: {exc}") from None
    if not isinstance(info, dict) or not info:
        raise ArchiveRefused(f"{INFO_NAME} must be an object mapping a dataset name to its description")
    name, entry = next(iter(info.items()))
    if not isinstance(entry, dict):
        raise ArchiveRefused(f"dataset '{name}' in {INFO_NAME} must be an object")
    if hub := [key for key in HUB_KEYS if entry.get(key)]:
        raise ArchiveRefused(
            f"dataset '{name}' in {INFO_NAME} points elsewhere ({hub[0]}); "
            "give 'file_name', a data file in the archive"
        )
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name.strip():
        raise ArchiveRefused(f"dataset '{name}' in {INFO_NAME} needs 'file_name', a data file in the archive")
    if entry.get("ranking"):
        raise ArchiveRefused(f"dataset '{name}': preference (ranking) datasets are not supported yet")
    declared = entry.get("formatting") or "alpaca"
    if declared not in ("alpaca", "sharegpt"):
        raise ArchiveRefused(
            f"dataset '{name}' has unknown formatting {declared!r}: expected 'alpaca' or 'sharegpt'"
        )
    formatting: Formatting = "sharegpt" if declared == "sharegpt" else "alpaca"
    return DatasetEntry(
        name=name,
        file_name=file_name,
        formatting=formatting,
        columns=_names(entry.get("columns"), "columns", name),
        tags=_names(entry.get("tags"), "tags", name),
    )


# --- rows, read through the entry's column and tag names -------------------------------------------


def _optional_text(row: dict[str, Any], column: str | None) -> str | None:
    if column is None or row.get(column) is None:
        return None
    value = row[column]
    if not isinstance(value, str):
        raise RowError(f"'{column}' must be a string")
    return value


class AlpacaRows:
    """LLaMA-Factory's alpaca rows: the prompt and query columns make the user turn, the response
    column the assistant turn; optional system and history ([prompt, response] pairs) columns."""

    def __init__(self, fmt: str, columns: dict[str, str]) -> None:
        self._format = fmt
        self._prompt = columns.get("prompt", ALPACA_COLUMNS["prompt"])
        self._query = columns.get("query", ALPACA_COLUMNS["query"])
        self._response = columns.get("response", ALPACA_COLUMNS["response"])
        self._system = columns.get("system")
        self._history = columns.get("history")

    def check(self, row: Any) -> tuple[str, list[str]]:
        if not isinstance(row, dict):
            raise RowError(f"expected a JSON object, got {type(row).__name__}")
        prompt = _optional_text(row, self._prompt)
        query = _optional_text(row, self._query)
        if not (prompt or "").strip() and not (query or "").strip():
            raise RowError(f"'{self._prompt}' (the prompt column) must be a non-empty string")
        response = row.get(self._response)
        if response is None:
            raise RowError(
                f"missing '{self._response}' (the response column): "
                "every example needs the assistant turn to learn from"
            )
        if not isinstance(response, str) or not response.strip():
            raise RowError(f"'{self._response}' (the response column) must be a non-empty string")
        texts = [t for t in (prompt, query, response, _optional_text(row, self._system)) if t]
        if self._history is not None and row.get(self._history) is not None:
            history = row[self._history]
            if not isinstance(history, list):
                raise RowError(f"'{self._history}' must be a list of [prompt, response] pairs")
            for i, pair in enumerate(history):
                if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
                    raise RowError(f"{self._history}[{i}] must be a pair of strings [prompt, response]")
                texts.extend(pair)
        return self._format, texts


class ShareGptRows:
    """LLaMA-Factory's sharegpt rows: a list of turns whose role and content keys and role values
    are the entry's tags; an optional leading system turn, then user (or observation) and
    assistant (or function call) turns in alternation, ending with the assistant."""

    def __init__(self, fmt: str, columns: dict[str, str], tags: dict[str, str]) -> None:
        names = {**SHAREGPT_TAGS, **tags}
        self._format = fmt
        self._messages = columns.get("messages", "conversations")
        self._system = columns.get("system")
        self._role = names["role_tag"]
        self._content = names["content_tag"]
        self._system_tag = names["system_tag"]
        self._asks = (names["user_tag"], names["observation_tag"])
        self._answers = (names["assistant_tag"], names["function_tag"])

    def check(self, row: Any) -> tuple[str, list[str]]:
        if not isinstance(row, dict):
            raise RowError(f"expected a JSON object, got {type(row).__name__}")
        turns = row.get(self._messages)
        if not isinstance(turns, list) or not turns:
            raise RowError(f"'{self._messages}' (the messages column) must be a non-empty list")
        texts = [t for t in (_optional_text(row, self._system),) if t]
        start = 1 if isinstance(turns[0], dict) and turns[0].get(self._role) == self._system_tag else 0
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise RowError(f"{self._messages}[{i}] must be an object")
            if i >= start:
                expected = self._asks if (i - start) % 2 == 0 else self._answers
                if turn.get(self._role) not in expected:
                    raise RowError(
                        f"{self._messages}[{i}] has {self._role} {turn.get(self._role)!r}; expected "
                        f"{' or '.join(repr(t) for t in expected)} (turns alternate, user first)"
                    )
            content = turn.get(self._content)
            if not isinstance(content, str):
                raise RowError(f"{self._messages}[{i}].{self._content} must be a string")
            texts.append(content)
        if (len(turns) - start) % 2 or len(turns) == start:
            raise RowError(
                f"the conversation must end with an assistant turn ({self._answers[0]!r}) to learn from"
            )
        return self._format, texts


# --- the archive -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    name: str  # normalised: no "./", "/" as the separator
    raw: Any  # the ZipInfo or TarInfo
    is_file: bool


def _member_name(raw: str) -> str:
    """The member's name, normalised; refuses names that would land outside the folder the
    archive is unpacked into (the trainer unpacks it)."""
    parts = re.split(r"[/\\]", raw)
    if raw.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", raw) or ".." in parts or "\x00" in raw:
        raise ArchiveRefused(f"the archive member {raw!r} points outside the archive; it is refused")
    return posixpath.normpath("/".join(p for p in parts if p not in ("", ".")) or ".")


class _Archive:
    """A zip or tar file's members, read without unpacking to disk."""

    def __init__(self, zip_file: zipfile.ZipFile | None, tar_file: tarfile.TarFile | None) -> None:
        self._zip = zip_file
        self._tar = tar_file

    @classmethod
    @contextlib.contextmanager
    def opened(cls, path: Path, kind: ArchiveKind) -> Iterator[_Archive]:
        if kind == "zip":
            with zipfile.ZipFile(path) as zip_file:
                yield cls(zip_file, None)
        else:
            with tarfile.open(path, "r:*") as tar_file:  # plain or gzip, told by the content
                yield cls(None, tar_file)

    def members(self) -> list[Member]:
        members: list[Member] = []
        if self._zip is not None:
            for info in self._zip.infolist():
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise ArchiveRefused(f"the archive member {info.filename!r} is a link; links are refused")
                members.append(Member(_member_name(info.filename), info, not info.is_dir()))
        if self._tar is not None:
            for tar_info in self._tar.getmembers():
                if not (tar_info.isfile() or tar_info.isdir()):
                    raise ArchiveRefused(
                        f"the archive member {tar_info.name!r} is a link or a device; only files are accepted"
                    )
                members.append(Member(_member_name(tar_info.name), tar_info, tar_info.isfile()))
        return members

    def open(self, member: Member) -> IO[bytes]:
        if self._zip is not None:
            return self._zip.open(member.raw)
        assert self._tar is not None
        handle = self._tar.extractfile(member.raw)
        assert handle is not None  # a regular file
        return handle

    def read_small(self, member: Member, limit: int) -> bytes:
        with self.open(member) as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise ArchiveRefused(f"{member.name} is larger than {limit} bytes")
        return data


def _info_member(members: list[Member]) -> Member:
    """The shallowest dataset_info.json (an archive of a folder holds it one level down)."""
    found = [m for m in members if m.is_file and posixpath.basename(m.name) == INFO_NAME]
    if not found:
        raise ArchiveRefused(
            f"the archive holds no {INFO_NAME}: add one naming the data file and its formatting "
            "(LLaMA-Factory's layout)"
        )
    depth = min(m.name.count("/") for m in found)
    top = [m for m in found if m.name.count("/") == depth]
    if len(top) > 1:
        raise ArchiveRefused(f"the archive holds {len(top)} {INFO_NAME} files side by side; keep one")
    return top[0]


def _data_member(members: list[Member], info: Member, entry: DatasetEntry) -> Member:
    base = posixpath.dirname(info.name)
    wanted = posixpath.normpath(posixpath.join(base, entry.file_name.replace("\\", "/")))
    if entry.file_name.startswith(("/", "\\")) or wanted == ".." or wanted.startswith("../"):
        raise ArchiveRefused(f"dataset '{entry.name}' names {entry.file_name!r}, outside the archive")
    by_name = {m.name: m for m in members}
    member = by_name.get(wanted)
    if member is None or not member.is_file:
        if member is not None or any(name.startswith(wanted + "/") for name in by_name):
            raise ArchiveRefused(
                f"dataset '{entry.name}' names the folder {entry.file_name!r}; name one .json or .jsonl file"
            )
        raise ArchiveRefused(
            f"dataset '{entry.name}' names the file {entry.file_name!r}, which is not in the archive"
        )
    if not wanted.endswith(DATA_SUFFIXES):
        raise ArchiveRefused(
            f"dataset '{entry.name}' names {entry.file_name!r}: only .json and .jsonl data files are accepted"
        )
    return member


def validate_archive(
    path: Path,
    kind: ArchiveKind,
    counter: TokenCounter,
    *,
    max_bytes: int,
    sampling: Sampling | None = SAMPLING,
) -> DatasetReport:
    """Reads dataset_info.json and validates the data file of its first dataset with the declared
    formatting, streaming the member; `max_bytes` bounds the data file once unpacked."""
    try:
        with _Archive.opened(path, kind) as archive:
            return _validate(archive, counter, max_bytes, sampling)
    except ArchiveRefused as exc:
        return DatasetReport(errors=[ValidationIssue(0, str(exc))])
    except ARCHIVE_ERRORS as exc:
        what = "zip" if kind == "zip" else "tar or .tar.gz"
        return DatasetReport(errors=[ValidationIssue(0, f"not a readable {what} archive: {exc}")])


def _validate(
    archive: _Archive, counter: TokenCounter, max_bytes: int, sampling: Sampling | None
) -> DatasetReport:
    members = archive.members()
    info = _info_member(members)
    entry = parse_dataset_info(archive.read_small(info, INFO_LIMIT))
    data = _data_member(members, info, entry)
    validator = DatasetValidator(counter, sampling=sampling, check=entry.row_check(), source=data.name)
    size = 0
    with archive.open(data) as handle:
        while chunk := handle.read(READ_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise ArchiveRefused(f"{data.name} unpacks to more than the limit of {max_bytes} bytes")
            validator.feed(chunk)
    report = validator.finish()
    report.format = report.format or entry.format
    return report


@contextlib.asynccontextmanager
async def stored_file(store: ArtifactStore, key: str) -> AsyncIterator[Path]:
    """A local path of a stored artifact, for readers that seek (zip, tar): the file itself in a
    local store, else a temporary copy, streamed down and removed afterwards."""
    url = await store.url(key)
    if url.startswith("file://"):
        yield Path(unquote(urlparse(url).path))
        return
    with tempfile.NamedTemporaryFile(prefix="suanli-archive-") as copy:
        async for chunk in store.read(key):
            await asyncio.to_thread(copy.write, chunk)
        await asyncio.to_thread(copy.flush)
        yield Path(copy.name)
