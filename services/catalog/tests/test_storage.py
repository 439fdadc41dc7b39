"""Artifact stores: the local directory, and S3 against a real S3 HTTP server (moto's, in
process) when moto is installed. A failed stream leaves nothing in either."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suanli_catalog.storage import ArtifactStore, LocalStore, S3Store
from suanli_common.errors import NotFound


async def stream(parts: list[bytes], fail_after: int | None = None) -> AsyncIterator[bytes]:
    for i, part in enumerate(parts):
        if fail_after is not None and i == fail_after:
            raise RuntimeError("client went away")
        yield part


async def collect(store: ArtifactStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, chunk_size=1000)])


async def check_store(store: ArtifactStore) -> None:
    parts = [bytes([i]) * 3_000_000 for i in range(4)]  # 12 MB: more than one S3 part
    assert await store.write("files/u1/a", stream(parts)) == 12_000_000
    assert await store.exists("files/u1/a")
    assert await collect(store, "files/u1/a") == b"".join(parts)
    assert await store.url("files/u1/a")
    with pytest.raises(RuntimeError):
        await store.write("files/u1/b", stream(parts, fail_after=2))
    assert not await store.exists("files/u1/b")
    await store.delete("files/u1/a")
    assert not await store.exists("files/u1/a")
    with pytest.raises(NotFound):
        await collect(store, "files/u1/a")
    for bad in ("../x", "/abs", "a//b", "a/./b"):
        with pytest.raises(ValueError):
            await store.write(bad, stream([b"x"]))


async def test_local_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "artifacts")
    await check_store(store)
    assert [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()] == []


async def test_s3_store_against_a_real_s3_server(s3_endpoint: str) -> None:
    store = S3Store(
        "suanli-test",
        endpoint_url=s3_endpoint,
        access_key_id="test",
        secret_access_key="test",
        prefix="catalog",
    )
    await store.ensure_bucket()
    await check_store(store)
    assert "Signature=" in await store.url("files/u1/a")
