"""Staging a job's volume: its folders, and the inputs it names (local paths, `file://` or
`http(s)://` URLs such as presigned S3 URLs) copied or downloaded in, with progress."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import url2pathname

import httpx

Progress = Callable[[float, str], Awaitable[None]]

DOWNLOAD_CHUNK = 1 << 20
DOWNLOAD_TRIES = 3  # connection failures and 5xx answers are retried; 4xx ones are not
PROGRESS_EVERY_S = 1.0  # each progress call is a JobReport on WORK: not one per chunk
DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, read=120.0)


class StagingError(Exception):
    """The job cannot start on this node (its message says why, to the user)."""


@dataclass(frozen=True, slots=True)
class StagedPaths:
    volume: Path
    ckpt: Path
    output: Path
    model: str
    dataset: str


def inside(volume: Path, relative: str) -> Path:
    path = (volume / relative).resolve()
    if path != volume and volume not in path.parents:
        raise StagingError(f"{relative!r} leaves the job's volume")
    return path


async def stage(
    volume: Path,
    *,
    ckpt_path: str,
    model_save_path: str,
    model_path: str,
    dataset_path: str,
    volume_gb: int,
    on_progress: Progress,
) -> StagedPaths:
    volume, ckpt, output = await asyncio.to_thread(_prepare, volume, ckpt_path, model_save_path, volume_gb)
    inputs = [(name, src) for name, src in (("model", model_path), ("dataset", dataset_path)) if src]
    staged: dict[str, str] = {"model": "", "dataset": ""}
    await on_progress(0.0, "staging inputs")
    for index, (name, source) in enumerate(inputs):
        within = _scaled(on_progress, index, len(inputs))
        target = await _stage_input(name, source, volume / "inputs" / name, within)
        staged[name] = str(target)
        await on_progress((index + 1) / len(inputs), f"staged {name}")
    await on_progress(1.0, "inputs staged")
    return StagedPaths(volume, ckpt, output, staged["model"], staged["dataset"])


def _scaled(on_progress: Progress, index: int, count: int) -> Progress:
    """Progress within input `index` of `count`, as progress of the whole staging."""

    async def report(fraction: float, message: str) -> None:
        await on_progress((index + min(max(fraction, 0.0), 1.0)) / count, message)

    return report


async def _stage_input(name: str, source: str, folder: Path, on_progress: Progress) -> Path:
    if urlsplit(source).scheme.lower() in ("http", "https"):
        target = folder / url_file_name(source)
        await download(source, target, name, on_progress)
        return target
    src = _local_source(name, source)
    target = folder / src.name
    await asyncio.to_thread(_copy, src, target, name)
    return target


async def stage_to(name: str, source: str, target: Path, on_progress: Progress) -> None:
    """Copies or downloads one input to exactly `target` (an instance names its mounts itself); a
    target already there is kept."""
    if urlsplit(source).scheme.lower() in ("http", "https"):
        await download(source, target, name, on_progress)
    else:
        await asyncio.to_thread(_copy, _local_source(name, source), target, name)


def _local_source(name: str, source: str) -> Path:
    parts = urlsplit(source)
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost"):
            raise StagingError(f"{name} URL {source!r} names another host; file:// URLs must be local")
        return Path(url2pathname(parts.path))
    if "://" in source:
        raise StagingError(f"{name} URL {redact(source)!r}: only file://, http:// and https:// are supported")
    return Path(source)


def url_file_name(url: str) -> str:
    """The staged file's name: the last segment of the URL's path (the query, which carries a
    presigned URL's signature, left out), or "data" where that gives no usable name."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        return "data"
    return name


def redact(url: str) -> str:
    """The URL without its query, fragment and credentials: fit for messages users and logs see."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


async def download(url: str, target: Path, name: str, on_progress: Progress) -> None:
    """Streams `url` into `target.partial`, then renames it: a half-downloaded input is never taken
    for a staged one, and a target already there (an earlier attempt's) is kept."""
    if await asyncio.to_thread(target.exists):
        return
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shown = redact(url)
    try:
        async with httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True) as client:
            for attempt in range(1, DOWNLOAD_TRIES + 1):
                try:
                    await _fetch(client, url, partial, name, on_progress)
                    break
                except httpx.InvalidURL:
                    raise StagingError(f"{name} URL {shown!r} is not a valid URL") from None
                except _Retryable as exc:
                    if attempt == DOWNLOAD_TRIES:
                        raise StagingError(f"downloading the {name} from {shown} failed: {exc}") from None
                    await asyncio.sleep(attempt * 1.0)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(partial.unlink, missing_ok=True))
        raise
    await asyncio.to_thread(os.replace, partial, target)


class _Retryable(Exception):
    """A failure worth another try (the connection, or the server's 5xx)."""


async def _fetch(
    client: httpx.AsyncClient, url: str, partial: Path, name: str, on_progress: Progress
) -> None:
    shown = redact(url)
    try:
        # identity: the bytes on disk are the bytes served, and Content-Length measures them.
        async with client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response:
            if response.status_code >= 500:
                raise _Retryable(f"HTTP {response.status_code} {response.reason_phrase}")
            if response.status_code >= 400:
                raise StagingError(
                    f"downloading the {name} from {shown} failed: "
                    f"HTTP {response.status_code} {response.reason_phrase}"
                )
            length = response.headers.get("content-length", "")
            total = int(length) if length.isdigit() else 0
            file = await asyncio.to_thread(_open_new, partial)
            try:
                last = 0.0
                async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
                    if time.monotonic() - last >= PROGRESS_EVERY_S:
                        await on_progress(*_download_progress(name, response.num_bytes_downloaded, total))
                        last = time.monotonic()
                    await asyncio.to_thread(file.write, chunk)
            finally:
                await asyncio.to_thread(file.close)
            done = response.num_bytes_downloaded
            if total and done != total:
                raise _Retryable(f"the server sent {done} of {total} bytes")
            await on_progress(*_download_progress(name, done, total))
    except httpx.HTTPError as exc:
        # Its text is the transport's (never the URL's query, which the message must not show).
        raise _Retryable(f"{type(exc).__name__}: {str(exc).replace(url, shown)}") from None


def _open_new(path: Path) -> BinaryIO:
    return open(path, "wb")


def _download_progress(name: str, done: int, total: int) -> tuple[float, str]:
    mb = done / 2**20
    if total:
        return done / total, f"downloading {name}: {mb:.1f} of {total / 2**20:.1f} MB"
    return 0.0, f"downloading {name}: {mb:.1f} MB"


def _prepare(volume: Path, ckpt_path: str, model_save_path: str, volume_gb: int) -> tuple[Path, Path, Path]:
    volume = volume.resolve()
    volume.mkdir(parents=True, exist_ok=True)
    if volume_gb:
        free_gb = shutil.disk_usage(volume).free / 2**30
        if free_gb < volume_gb:
            raise StagingError(
                f"the job asks for a {volume_gb} GB volume; this node has {free_gb:.1f} GB free"
            )
    ckpt = inside(volume, ckpt_path or "checkpoints")
    output = inside(volume, model_save_path or "output")
    ckpt.mkdir(parents=True, exist_ok=True)
    output.mkdir(parents=True, exist_ok=True)
    return volume, ckpt, output


def _copy(src: Path, target: Path, name: str) -> None:
    if not src.exists():
        raise StagingError(f"{name} path {str(src)!r} does not exist on this node")
    if target.exists():
        return
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(src, partial)
    else:
        shutil.copy2(src, partial)
    os.replace(partial, target)  # a half-copied input is never taken for a staged one
