"""Job outputs registered from real `job.succeeded` events (a real nats-server, the envelope the
scheduler publishes): fine-tuned models and generic artifacts owned by the job's owner, private,
registered once however often the event comes, missing or empty outputs recorded as failed."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from suanli_catalog.events import MODEL_REGISTERED
from suanli_common.bus import EventPublisher, make_broker
from suanli_common.errors import NotFound
from suanli_common.ids import adapter_model_id, fine_tuned_model_id
from suanli_common.proto.suanli.v1 import catalog_pb2, events_pb2


class Scheduler:
    """Publishes job.succeeded the way the scheduler's outbox relay does."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    async def job_succeeded(
        self,
        job_id: str,
        output_path: str,
        owner_id: str = "user_alice",
        *,
        job_type: str = "pytorch",
        output_model_id: str = "",
        base_model_id: str = "",
    ) -> None:
        payload = events_pb2.JobStateChanged(
            job_id=job_id,
            owner_id=owner_id,
            name="train",
            job_type=job_type,
            status="succeeded",
            attempt=1,
            node_ids=["node-1"],
            output_path=output_path,
            output_model_id=output_model_id,
            base_model_id=base_model_id,
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
    return [m.id for m in listed.models if m.source.split(":")[:2] == ["job", job_id]]


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


BASE = "smollm2-135m-instruct"


def write_adapter(folder: Path, model_dir: Path) -> None:
    """A LoRA adapter folder as the platform's fine-tunes leave it (config, weights, tokenizer)."""
    folder.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    shutil.copy(model_dir / "model.safetensors", folder / "adapter_model.safetensors")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (model_dir / name).is_file():
            shutil.copy(model_dir / name, folder / name)


async def marker_job(catalog: Any, scheduler: Scheduler, tmp_path: Path, name: str) -> None:
    """A later job's output, registered after whatever was published before it: once it is
    there, the events before it have been handled."""
    marker = tmp_path / name
    marker.mkdir()
    (marker / "log.txt").write_text("done")
    await scheduler.job_succeeded(name, str(marker))
    await model_of(catalog, f"artifact:{name}")


async def test_a_fine_tune_leaves_its_merged_model_and_adapter_under_the_ids_it_was_given(
    catalog: Any,
    scheduler: Scheduler,
    tiny_model_dir: Path,
    tmp_path: Path,
    catch_events: Any,
    join_stream: Any,
) -> None:
    await catalog.stub.RegisterModel(
        catalog_pb2.RegisterModelRequest(owner_id="user_alice", source=f"path:{tiny_model_dir}", id=BASE)
    )
    job_id = "job_01abcdefghjkmnpqrstvwxyz012"
    output = tmp_path / "volumes" / job_id / "output"
    shutil.copytree(tiny_model_dir, output / "merged")
    write_adapter(output / "adapter", tiny_model_dir)
    (output / "result.json").write_text('{"final_loss": 1.5}')
    model_id = fine_tuned_model_id(BASE, "my-suffix", job_id)
    adapter_id = adapter_model_id(model_id)
    assert (model_id, adapter_id) == (
        f"ft:{BASE}:my-suffix:{job_id}",
        f"ft:{BASE}:my-suffix:{job_id}:adapter",
    )

    async with catch_events(catalog.nats_url, MODEL_REGISTERED) as events:
        await scheduler.job_succeeded(
            job_id, str(output), job_type="fine_tune", output_model_id=model_id, base_model_id=BASE
        )
        merged = await model_of(catalog, model_id)
        adapter = await model_of(catalog, adapter_id)
        registered = set()
        while len(registered) < 2:
            payload = events_pb2.ModelRegistered()
            assert events_pb2.EventEnvelope.FromString(await events.next()).data.Unpack(payload)
            if payload.model_id != BASE:  # the base's own event may be relayed this late
                registered.add((payload.model_id, payload.kind, payload.base_model_id))
    assert registered == {(model_id, "fine_tuned", BASE), (adapter_id, "adapter", BASE)}

    assert merged.kind == catalog_pb2.MODEL_KIND_FINE_TUNED and merged.state == catalog_pb2.MODEL_STATE_READY
    assert (merged.owner_id, merged.source, merged.base_model_id) == ("user_alice", f"job:{job_id}", BASE)
    assert merged.visibility == catalog_pb2.VISIBILITY_PRIVATE and merged.path == str(output / "merged")
    assert merged.architecture == "Qwen2ForCausalLM" and merged.tokenizer_path == merged.path

    assert adapter.kind == catalog_pb2.MODEL_KIND_ADAPTER and adapter.state == catalog_pb2.MODEL_STATE_READY
    assert (adapter.owner_id, adapter.source) == ("user_alice", f"job:{job_id}:adapter")
    assert adapter.base_model_id == BASE and adapter.path == str(output / "adapter")
    assert adapter.visibility == catalog_pb2.VISIBILITY_PRIVATE
    assert adapter.architecture == "Qwen2ForCausalLM"  # its base's: an adapter's config names none

    # The adapter downloads like any model: one file, or the folder as a tar.
    request = catalog_pb2.DownloadModelRequest(
        caller_id="user_alice", model_id=adapter_id, path="adapter_config.json"
    )
    assert json.loads(await join_stream(catalog.stub.DownloadModel(request)))["peft_type"] == "LORA"
    with tarfile.open(fileobj=io.BytesIO(await download(catalog, join_stream, adapter_id))) as tar:
        prefix = adapter_id.replace("/", "_")
        assert f"{prefix}/adapter_model.safetensors" in tar.getnames()
    for entry in (model_id, adapter_id):
        with pytest.raises(NotFound):
            await catalog.stub.GetModel(catalog_pb2.GetModelRequest(caller_id="user_bob", model_id=entry))

    # Redelivered: nothing new.
    await scheduler.job_succeeded(
        job_id, str(output), job_type="fine_tune", output_model_id=model_id, base_model_id=BASE
    )
    await marker_job(catalog, scheduler, tmp_path, "job_marker")
    assert sorted(await job_entries(catalog, job_id)) == [model_id, adapter_id]


async def test_a_full_fine_tune_leaves_no_adapter_and_a_broken_one_says_why(
    catalog: Any, scheduler: Scheduler, tiny_model_dir: Path, tmp_path: Path
) -> None:
    full = tmp_path / "full" / "output"
    shutil.copytree(tiny_model_dir, full / "merged")
    await scheduler.job_succeeded(
        "job_full", str(full), job_type="fine_tune", output_model_id="ft:base:job_full", base_model_id="base"
    )
    model = await model_of(catalog, "ft:base:job_full")
    assert model.state == catalog_pb2.MODEL_STATE_READY and model.base_model_id == "base"

    broken = tmp_path / "broken" / "output"
    (broken / "merged").mkdir(parents=True)
    (broken / "merged" / "config.json").write_text("{}")  # no weights, no tokenizer
    write_adapter(broken / "adapter", tiny_model_dir)
    await scheduler.job_succeeded(
        "job_broken", str(broken), job_type="fine_tune", output_model_id="ft:base:x:job_broken"
    )
    failed = await model_of(catalog, "ft:base:x:job_broken")
    assert failed.state == catalog_pb2.MODEL_STATE_FAILED and failed.kind == catalog_pb2.MODEL_KIND_FINE_TUNED
    assert "merged/ is unusable" in failed.error
    adapter = await model_of(catalog, "ft:base:x:job_broken:adapter")
    assert adapter.state == catalog_pb2.MODEL_STATE_READY  # the adapter alone is still usable

    await scheduler.job_succeeded(
        "job_gone", str(tmp_path / "never"), job_type="fine_tune", output_model_id="ft:base:job_gone"
    )
    gone = await model_of(catalog, "ft:base:job_gone")
    assert gone.state == catalog_pb2.MODEL_STATE_FAILED and "does not exist" in gone.error
    await marker_job(catalog, scheduler, tmp_path, "job_marker")
    assert await job_entries(catalog, "job_full") == ["ft:base:job_full"]
    assert await job_entries(catalog, "job_gone") == ["ft:base:job_gone"]


async def test_an_evaluation_registers_nothing(catalog: Any, scheduler: Scheduler, tmp_path: Path) -> None:
    output = tmp_path / "eval" / "output"
    output.mkdir(parents=True)
    (output / "result.json").write_text('{"bleu": 0.5}')
    await scheduler.job_succeeded("job_eval", str(output), job_type="evaluation")
    await marker_job(catalog, scheduler, tmp_path, "job_marker")
    assert await job_entries(catalog, "job_eval") == []
