"""Job outputs registered from real `job.succeeded` events (a real nats-server, the envelope the
scheduler publishes): fine-tuned models and generic artifacts owned by the job's owner, private,
registered once however often the event comes, missing or empty outputs recorded as failed."""

from __future__ import annotations

import asyncio
import io
import shutil
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from suanli_catalog.events import MODEL_REGISTERED
from suanli_common.bus import EventPublisher, make_broker
from suanli_common.errors import NotFound
from suanli_common.proto.suanli.v1 import catalog_pb2, events_pb2


class Scheduler:
    """Publishes job.succeeded the way the scheduler's outbox relay does."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    async def job_succeeded(self, job_id: str, output_path: str, owner_id: str = "user_alice") -> None:
        payload = events_pb2.JobStateChanged(
            job_id=job_id,
            owner_id=owner_id,
            name="train",
            job_type="fine_tune",
            status="succeeded",
            attempt=1,
            node_ids=["node-1"],
            output_path=output_path,
        )
        await self._publisher.publish("job.succeeded", job_id, payload)


@pytest.fixture
async def scheduler(catalog: Any) -> AsyncIterator[Scheduler]:
    broker = make_broker(catalog.nats_url, service="scheduler-test")
    await broker.connect()
    yield Scheduler(EventPublisher(broker, source="scheduler"))
    await broker.stop()


async def model_of(catalog: Any, model_id: str, caller: str = "user_alice", timeout: float = 20) -> Any:
    """The entry once the subscriber has registered it."""
    request = catalog_pb2.GetModelRequest(caller_id=caller, model_id=model_id)
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await catalog.stub.GetModel(request)
            except NotFound:
                await asyncio.sleep(0.1)


async def job_entries(catalog: Any, job_id: str, caller: str = "user_alice") -> list[str]:
    listed = await catalog.stub.ListModels(catalog_pb2.ListModelsRequest(caller_id=caller))
    return [m.id for m in listed.models if m.source == f"job:{job_id}"]


async def download(catalog: Any, join_stream: Any, model_id: str, caller: str = "user_alice") -> bytes:
    request = catalog_pb2.DownloadModelRequest(caller_id=caller, model_id=model_id)
    data: bytes = await join_stream(catalog.stub.DownloadModel(request))
    return data


async def test_a_fine_tune_output_becomes_the_owners_private_model_once(
    catalog: Any,
    scheduler: Scheduler,
    tiny_model_dir: Path,
    tmp_path: Path,
    catch_events: Any,
    join_stream: Any,
) -> None:
    output = tmp_path / "volumes" / "job_ft1" / "output"
    shutil.copytree(tiny_model_dir, output / "merged")  # what the platform's fine-tunes write
    (output / "result.json").write_text('{"final_loss": 1.5}')
    async with catch_events(catalog.nats_url, MODEL_REGISTERED) as events:
        await scheduler.job_succeeded("job_ft1", str(output))
        model = await model_of(catalog, "ft:job_ft1")
        envelope = events_pb2.EventEnvelope.FromString(await events.next())
    assert model.kind == catalog_pb2.MODEL_KIND_FINE_TUNED and model.state == catalog_pb2.MODEL_STATE_READY
    assert (model.owner_id, model.source) == ("user_alice", "job:job_ft1")
    assert model.visibility == catalog_pb2.VISIBILITY_PRIVATE and model.path == str(output / "merged")
    assert model.architecture == "Qwen2ForCausalLM" and model.tokenizer_path == model.path
    registered = events_pb2.ModelRegistered()
    assert envelope.data.Unpack(registered)
    assert (registered.model_id, registered.kind, registered.owner_id) == (
        "ft:job_ft1",
        "fine_tuned",
        "user_alice",
    )

    with pytest.raises(NotFound):
        await catalog.stub.GetModel(catalog_pb2.GetModelRequest(caller_id="user_bob", model_id=model.id))
    with pytest.raises(NotFound):
        await download(catalog, join_stream, model.id, caller="user_bob")
    assert await job_entries(catalog, "job_ft1", caller="user_bob") == []

    # The same fact again (the scheduler re-publishing it, a redelivery): nothing new. A later
    # job's output, registered after it, shows the duplicate has been handled by then.
    await scheduler.job_succeeded("job_ft1", str(output))
    marker = tmp_path / "marker"
    marker.mkdir()
    (marker / "log.txt").write_text("done")
    await scheduler.job_succeeded("job_marker", str(marker))
    await model_of(catalog, "artifact:job_marker")
    assert await job_entries(catalog, "job_ft1") == ["ft:job_ft1"]


async def test_other_outputs_are_artifacts_downloadable_as_a_tar(
    catalog: Any, scheduler: Scheduler, tmp_path: Path, join_stream: Any
) -> None:
    output = tmp_path / "volumes" / "job_mpi" / "save"
    (output / "checkpoints").mkdir(parents=True)
    (output / "metrics.json").write_text('{"accuracy": 0.9}')
    (output / "checkpoints" / "step-10.pt").write_bytes(b"\x00" * 1000)
    (output / "config.json").write_text("{}")  # a config alone does not make a model
    await scheduler.job_succeeded("job_mpi", str(output))
    artifact = await model_of(catalog, "artifact:job_mpi")
    assert (
        artifact.kind == catalog_pb2.MODEL_KIND_ARTIFACT and artifact.state == catalog_pb2.MODEL_STATE_READY
    )
    assert artifact.source == "job:job_mpi" and artifact.tokenizer_path == "" and artifact.size_bytes == 1019

    listed = await catalog.stub.ListModelFiles(
        catalog_pb2.ListModelFilesRequest(caller_id="user_alice", model_id=artifact.id)
    )
    assert [(f.path, f.bytes) for f in listed.files] == [
        ("checkpoints/step-10.pt", 1000),
        ("config.json", 2),
        ("metrics.json", 17),
    ]
    with tarfile.open(fileobj=io.BytesIO(await download(catalog, join_stream, artifact.id))) as tar:
        names = tar.getnames()
        metrics = tar.extractfile("artifact:job_mpi/metrics.json")
        assert metrics is not None and metrics.read() == b'{"accuracy": 0.9}'
    assert "artifact:job_mpi/checkpoints/step-10.pt" in names
    with pytest.raises(NotFound):
        await download(catalog, join_stream, artifact.id, caller="user_bob")


async def test_missing_or_empty_outputs_are_recorded_as_failed(
    catalog: Any, scheduler: Scheduler, tmp_path: Path, join_stream: Any
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    await scheduler.job_succeeded("job_gone", str(tmp_path / "never-written"))
    await scheduler.job_succeeded("job_empty", str(empty))
    await scheduler.job_succeeded("job_nopath", "")  # declared no save path: nothing to register
    gone = await model_of(catalog, "artifact:job_gone")
    nothing = await model_of(catalog, "artifact:job_empty")
    for entry in (gone, nothing):
        assert entry.state == catalog_pb2.MODEL_STATE_FAILED and entry.owner_id == "user_alice"
    assert "does not exist" in gone.error and "no files" in nothing.error
    assert await job_entries(catalog, "job_nopath") == []
    with pytest.raises(Exception, match="not ready"):
        await download(catalog, join_stream, nothing.id)
