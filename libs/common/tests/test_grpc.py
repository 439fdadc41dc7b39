"""gRPC helpers over a real server: domain errors cross the wire, retries ride over restarts."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from suanli_common.errors import InvalidRequest, NotFound, SuanliError
from suanli_common.grpc import check_health, make_channel, make_server
from suanli_common.proto.suanli.v1 import catalog_pb2, catalog_pb2_grpc
from suanli_common.testing import free_port


class Catalog(catalog_pb2_grpc.CatalogServiceServicer):
    async def GetModel(self, request: catalog_pb2.GetModelRequest, context: object) -> catalog_pb2.Model:
        if request.model_id == "missing":
            raise NotFound("model 'missing' not found", code="model_not_found", param="model")
        if request.model_id == "bad":
            raise InvalidRequest("bad id", param="model_id")
        if request.model_id == "crash":
            raise RuntimeError("a bug")
        return catalog_pb2.Model(id=request.model_id)


async def start(port: int) -> grpc.aio.Server:
    server, _ = make_server(port)
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(Catalog(), server)
    await server.start()
    return server


async def test_domain_errors_arrive_as_the_same_class() -> None:
    port = free_port()
    server = await start(port)
    channel = make_channel(f"127.0.0.1:{port}")
    stub = catalog_pb2_grpc.CatalogServiceStub(channel)
    try:
        assert (await stub.GetModel(catalog_pb2.GetModelRequest(model_id="m1"))).id == "m1"
        with pytest.raises(NotFound) as missing:
            await stub.GetModel(catalog_pb2.GetModelRequest(model_id="missing"))
        assert missing.value.code == "model_not_found" and missing.value.param == "model"
        assert missing.value.to_openai()["error"]["type"] == "not_found_error"
        with pytest.raises(InvalidRequest):
            await stub.GetModel(catalog_pb2.GetModelRequest(model_id="bad"))
        with pytest.raises(SuanliError) as crash:
            await stub.GetModel(catalog_pb2.GetModelRequest(model_id="crash"))
        assert crash.value.http_status == 500 and "a bug" not in crash.value.message
        assert await check_health(channel)
    finally:
        await channel.close()
        await server.stop(None)


async def test_idempotent_call_is_retried_while_the_server_restarts() -> None:
    port = free_port()
    channel = make_channel(
        f"127.0.0.1:{port}", timeout=10, service="suanli.v1.CatalogService", idempotent_methods=["GetModel"]
    )
    stub = catalog_pb2_grpc.CatalogServiceStub(channel)

    async def start_late() -> grpc.aio.Server:
        await asyncio.sleep(0.4)
        return await start(port)

    starting = asyncio.ensure_future(start_late())
    try:
        model = await stub.GetModel(catalog_pb2.GetModelRequest(model_id="m2"), wait_for_ready=False)
        assert model.id == "m2"
    finally:
        server = await starting
        await channel.close()
        await server.stop(None)


async def test_unreachable_service_is_unavailable_not_a_crash() -> None:
    channel = make_channel(f"127.0.0.1:{free_port()}", timeout=0.5)
    try:
        with pytest.raises(SuanliError) as exc:
            await catalog_pb2_grpc.CatalogServiceStub(channel).GetModel(catalog_pb2.GetModelRequest())
        assert exc.value.http_status in (503, 504)
        assert not await check_health(channel, timeout=0.3)
    finally:
        await channel.close()


class Uploads(catalog_pb2_grpc.CatalogServiceServicer):
    async def UploadFile(self, requests: object, context: object) -> catalog_pb2.File:
        total = 0
        async for chunk in requests:  # type: ignore[attr-defined]
            total += len(chunk.data)
            if total > 10:
                raise InvalidRequest("file too large", code="file_too_large", param="file")
        return catalog_pb2.File(bytes=total)


async def test_upload_errors_arrive_as_domain_errors_even_mid_stream() -> None:
    port = free_port()
    server, _ = make_server(port)
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(Uploads(), server)
    await server.start()
    channel = make_channel(f"127.0.0.1:{port}")
    stub = catalog_pb2_grpc.CatalogServiceStub(channel)

    async def chunks(n: int) -> object:
        for _ in range(n):
            yield catalog_pb2.UploadFileChunk(data=b"12345")
            await asyncio.sleep(0.01)

    try:
        assert (await stub.UploadFile(chunks(2))).bytes == 10
        with pytest.raises(InvalidRequest) as exc:
            await stub.UploadFile(chunks(1000))
        assert exc.value.code == "file_too_large"
    finally:
        await channel.close()
        await server.stop(None)
