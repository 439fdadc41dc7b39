"""Prometheus metrics: the gRPC interceptor over a real server, the /metrics endpoint over real HTTP,
and the bus's publish/consume counts over a real nats-server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families

from suanli_common.bus import EventPublisher, declare_streams, make_broker, subscribe_events
from suanli_common.errors import NotFound, SuanliError
from suanli_common.grpc import make_channel, make_server
from suanli_common.metrics import serving_metrics, subject_label
from suanli_common.proto.suanli.v1 import catalog_pb2, catalog_pb2_grpc
from suanli_common.proto.suanli.v1.events_pb2 import UserCreated
from suanli_common.testing import NatsServer, free_port

GET_MODEL = "suanli.v1.CatalogService/GetModel"
READ_FILE = "suanli.v1.CatalogService/ReadFileContent"
UPLOAD_FILE = "suanli.v1.CatalogService/UploadFile"


class Catalog(catalog_pb2_grpc.CatalogServiceServicer):
    async def GetModel(self, request: catalog_pb2.GetModelRequest, context: object) -> catalog_pb2.Model:
        if request.model_id == "missing":
            raise NotFound("no such model", param="model")
        if request.model_id == "crash":
            raise RuntimeError("a bug")
        return catalog_pb2.Model(id=request.model_id)

    async def ReadFileContent(
        self, request: catalog_pb2.ReadFileContentRequest, context: object
    ) -> AsyncIterator[catalog_pb2.DataChunk]:
        for part in (b"one", b"two"):
            yield catalog_pb2.DataChunk(data=part)
        if request.file_id == "cut":
            raise NotFound("the file went away half-way")

    async def UploadFile(
        self, request_iterator: AsyncIterator[catalog_pb2.UploadFileChunk], context: object
    ) -> catalog_pb2.File:
        size = sum([len(chunk.data) async for chunk in request_iterator])
        return catalog_pb2.File(id="file_1", bytes=size)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def counted(registry: CollectorRegistry, method: str, calls: int) -> None:
    """Waits until the server has counted `calls` calls of `method`: it counts a call once its
    handler has ended, which may be just after the client has the answer (an abort answers at once)."""
    for _ in range(100):
        if sample(registry, "suanli_grpc_server_request_duration_seconds_count", method=method) >= calls:
            return
        await asyncio.sleep(0.05)


@pytest.fixture
async def catalog_stub() -> AsyncIterator[tuple[catalog_pb2_grpc.CatalogServiceStub, CollectorRegistry]]:
    registry = CollectorRegistry()
    port = free_port()
    server, _ = make_server(port, metrics=registry)
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(Catalog(), server)
    await server.start()
    channel = make_channel(f"127.0.0.1:{port}")
    yield catalog_pb2_grpc.CatalogServiceStub(channel), registry
    await channel.close()
    await server.stop(None)


async def test_unary_calls_are_counted_by_method_and_status(
    catalog_stub: tuple[catalog_pb2_grpc.CatalogServiceStub, CollectorRegistry],
) -> None:
    stub, registry = catalog_stub
    for _ in range(2):
        await stub.GetModel(catalog_pb2.GetModelRequest(model_id="m1"))
    with pytest.raises(NotFound):
        await stub.GetModel(catalog_pb2.GetModelRequest(model_id="missing"))
    with pytest.raises(SuanliError):
        await stub.GetModel(catalog_pb2.GetModelRequest(model_id="crash"))
    await counted(registry, GET_MODEL, 4)

    total = "suanli_grpc_server_requests_total"
    assert sample(registry, total, method=GET_MODEL, code="OK") == 2
    # The status the domain error was mapped to, not the exception inside.
    assert sample(registry, total, method=GET_MODEL, code="NOT_FOUND") == 1
    assert sample(registry, total, method=GET_MODEL, code="INTERNAL") == 1
    duration = "suanli_grpc_server_request_duration_seconds"
    assert sample(registry, f"{duration}_count", method=GET_MODEL) == 4
    assert sample(registry, f"{duration}_sum", method=GET_MODEL) > 0


async def test_streaming_calls_are_counted_when_they_end(
    catalog_stub: tuple[catalog_pb2_grpc.CatalogServiceStub, CollectorRegistry],
) -> None:
    stub, registry = catalog_stub
    chunks = [c.data async for c in stub.ReadFileContent(catalog_pb2.ReadFileContentRequest(file_id="f"))]
    assert chunks == [b"one", b"two"]
    cut = stub.ReadFileContent(catalog_pb2.ReadFileContentRequest(file_id="cut"))
    with pytest.raises(grpc.aio.AioRpcError) as broken:
        async for _ in cut:
            pass
    assert broken.value.code() == grpc.StatusCode.NOT_FOUND

    async def upload() -> AsyncIterator[catalog_pb2.UploadFileChunk]:
        yield catalog_pb2.UploadFileChunk(metadata=catalog_pb2.UploadFileMetadata(filename="a.txt"))
        yield catalog_pb2.UploadFileChunk(data=b"12345")

    assert (await stub.UploadFile(upload())).bytes == 5
    await counted(registry, READ_FILE, 2)
    await counted(registry, UPLOAD_FILE, 1)

    total = "suanli_grpc_server_requests_total"
    assert sample(registry, total, method=READ_FILE, code="OK") == 1
    assert sample(registry, total, method=READ_FILE, code="NOT_FOUND") == 1
    assert sample(registry, total, method=UPLOAD_FILE, code="OK") == 1
    assert sample(registry, "suanli_grpc_server_request_duration_seconds_count", method=UPLOAD_FILE) == 1


async def test_the_endpoint_serves_the_registry_and_refreshes_it_first() -> None:
    registry = CollectorRegistry()
    scrapes = Gauge("test_scrapes", "Refreshes run", registry=registry)

    async def refresh() -> None:
        scrapes.inc()

    port = free_port()
    async with (
        serving_metrics(registry, "127.0.0.1", port, setting="TEST_PORT", refresh=[refresh]) as served,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        assert served == port
        first = await http.get("/metrics")
        second = await http.get("/metrics")
        assert first.status_code == 200 and first.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(second.text)}
        assert families["test_scrapes"].samples[0].value == 2
        assert (await http.get("/elsewhere")).status_code == 404
    with socket.socket() as probe:  # stopped: nothing listens any more
        assert probe.connect_ex(("127.0.0.1", port)) != 0


async def test_a_failing_refresh_still_serves_the_rest() -> None:
    registry = CollectorRegistry()
    Gauge("test_up", "Always there", registry=registry).set(1)

    async def broken() -> None:
        raise RuntimeError("the database is away")

    port = free_port()
    async with (
        serving_metrics(registry, "127.0.0.1", port, setting="TEST_PORT", refresh=[broken]),
        httpx.AsyncClient() as http,
    ):
        answer = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert answer.status_code == 200 and "test_up 1.0" in answer.text


async def test_port_zero_turns_the_endpoint_off_and_a_taken_port_does_not_stop_the_service() -> None:
    registry = CollectorRegistry()
    async with serving_metrics(registry, "127.0.0.1", 0, setting="TEST_PORT") as served:
        assert served is None
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        async with serving_metrics(registry, "127.0.0.1", taken, setting="TEST_PORT") as served:
            assert served is None


async def test_the_broker_counts_publishes_and_consumes(nats_server: NatsServer) -> None:
    registry = CollectorRegistry()
    broker = make_broker(nats_server.url, service="test", metrics=registry)
    received = asyncio.Event()

    async def on_created(event: object) -> None:
        received.set()

    subscribe_events(broker, "user.created", UserCreated, on_created, durable="test-metrics")
    await broker.connect()
    await declare_streams(broker)
    await broker.start()
    try:
        await EventPublisher(broker, source="test").publish("user.created", "u1", UserCreated(user_id="u1"))
        for job in ("job_1", "job_2"):
            await broker.publish(b"a log line", subject=f"logs.job.{job}.node-1")
        await asyncio.wait_for(received.wait(), 10)
        await asyncio.sleep(0.2)  # the middleware counts after the handler returns
    finally:
        await broker.stop()
    published = {
        s.labels["destination"]: s.value
        for f in registry.collect()
        if f.name == "faststream_published_messages"
        for s in f.samples
        if s.name.endswith("_total") and s.labels["app_name"] == "suanli-test"
    }
    # One series per event type, and one for every job's log lines (not one per job).
    assert published == {"events.user.created": 1, "logs.job": 2}
    consumed = [
        s
        for f in registry.collect()
        if f.name == "faststream_received_processed_messages"
        for s in f.samples
        if s.name.endswith("_total") and s.labels["status"] == "acked"
    ]
    assert sum(s.value for s in consumed) >= 1


@pytest.mark.parametrize(
    ("subject", "label"),
    [
        ("events.job.succeeded", "events.job.succeeded"),
        ("logs.job.job_01abc.node-7", "logs.job"),
        ("metrics.job.job_01abc.node-7", "metrics.job"),
        ("work.node.node-7", "work.node"),
        ("agent.heartbeat.node-7", "agent.heartbeat"),
        ("_INBOX.x9f2k.17", "_INBOX"),
    ],
)
def test_subject_labels_never_carry_ids(subject: str, label: str) -> None:
    assert subject_label(subject) == label
