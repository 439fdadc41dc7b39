"""The model repository over the real gRPC API: registering a real checkpoint from a path,
refusing what is not a model (no row left), visibility, streamed downloads, model.registered."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from suanli_catalog.events import MODEL_REGISTERED
from suanli_common.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from suanli_common.proto.suanli.v1 import catalog_pb2, events_pb2


def register(stub: Any, source: str, **fields: Any) -> Any:
    fields.setdefault("owner_id", "user_alice")
    return stub.RegisterModel(catalog_pb2.RegisterModelRequest(source=source, **fields))


async def test_register_a_local_checkpoint(catalog: Any, tiny_model_dir: Path, catch_events: Any) -> None:
    async with catch_events(catalog.nats_url, MODEL_REGISTERED) as events:
        model = await register(catalog.stub, f"path:{tiny_model_dir}", id="alice/tiny")
        envelope = events_pb2.EventEnvelope.FromString(await events.next())
    assert model.state == catalog_pb2.MODEL_STATE_READY and model.id == "alice/tiny"
    assert model.kind == catalog_pb2.MODEL_KIND_BASE and model.visibility == catalog_pb2.VISIBILITY_PRIVATE
    assert model.architecture == "Qwen2ForCausalLM" and model.context_length == 2048
    assert 100_000 < model.parameter_count < 1_000_000 and "<|im_start|>" in model.chat_template
    assert model.path == str(tiny_model_dir) and model.size_bytes > 0
    payload = events_pb2.ModelRegistered()
    assert (
        envelope.data.Unpack(payload)
        and payload.model_id == "alice/tiny"
        and payload.owner_id == "user_alice"
    )
    with pytest.raises(Conflict):
        await register(catalog.stub, str(tiny_model_dir), id="alice/tiny")


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: d / "missing", "does not exist"),
        (lambda d: d, "config.json is missing"),
        (lambda d: (d / "file.txt").write_text("x") and d / "file.txt", "not a directory"),
    ],
)
async def test_a_non_model_path_is_refused_and_leaves_no_row(
    catalog: Any, tmp_path: Path, make: Any, fragment: str
) -> None:
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    with pytest.raises(InvalidRequest) as refused:
        await register(catalog.stub, f"path:{make(folder)}", id="broken")
    assert fragment in refused.value.message and refused.value.code == "invalid_model_path"
    with pytest.raises(NotFound):
        await catalog.stub.GetModel(catalog_pb2.GetModelRequest(caller_id="user_alice", model_id="broken"))


async def test_a_model_without_weights_or_tokenizer_is_refused(
    catalog: Any, tmp_path: Path, tiny_model_dir: Path
) -> None:
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(InvalidRequest, match="no tokenizer"):
        await register(catalog.stub, str(folder))
    (folder / "tokenizer.json").write_text((tiny_model_dir / "tokenizer.json").read_text())
    with pytest.raises(InvalidRequest, match="no weights"):
        await register(catalog.stub, str(folder))
    with pytest.raises(InvalidRequest, match="unknown model source"):
        await register(catalog.stub, "ftp://x")
    listed = await catalog.stub.ListModels(catalog_pb2.ListModelsRequest(caller_id="user_alice"))
    assert list(listed.models) == []


async def test_private_models_are_invisible_to_others(
    catalog: Any, tiny_model_dir: Path, join_stream: Any
) -> None:
    await register(catalog.stub, str(tiny_model_dir), id="secret")
    public = await register(
        catalog.stub, str(tiny_model_dir), id="shared", visibility=catalog_pb2.VISIBILITY_PUBLIC
    )
    bob = await catalog.stub.ListModels(catalog_pb2.ListModelsRequest(caller_id="user_bob"))
    assert [m.id for m in bob.models] == [public.id]
    alice = await catalog.stub.ListModels(catalog_pb2.ListModelsRequest(caller_id="user_alice"))
    assert sorted(m.id for m in alice.models) == ["secret", "shared"]
    with pytest.raises(NotFound):
        await catalog.stub.GetModel(catalog_pb2.GetModelRequest(caller_id="user_bob", model_id="secret"))
    with pytest.raises(NotFound):
        await join_stream(
            catalog.stub.DownloadModel(
                catalog_pb2.DownloadModelRequest(caller_id="user_bob", model_id="secret")
            )
        )
    with pytest.raises(NotFound):
        await catalog.stub.DeleteModel(
            catalog_pb2.DeleteModelRequest(caller_id="user_bob", model_id="secret")
        )
    with pytest.raises(PermissionDenied):
        await catalog.stub.DeleteModel(
            catalog_pb2.DeleteModelRequest(caller_id="user_bob", model_id="shared")
        )
    await catalog.stub.DeleteModel(catalog_pb2.DeleteModelRequest(caller_id="user_alice", model_id="secret"))
    assert await asyncio.to_thread(tiny_model_dir.is_dir)  # forgetting a model never deletes a user's folder


async def test_download_streams_one_file_or_the_folder_as_tar(
    catalog: Any, tiny_model_dir: Path, join_stream: Any
) -> None:
    await register(catalog.stub, str(tiny_model_dir), id="tiny")
    listing = await catalog.stub.ListModelFiles(
        catalog_pb2.ListModelFilesRequest(caller_id="user_alice", model_id="tiny")
    )
    names = {f.path: f.bytes for f in listing.files}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(names)
    assert ".suanli-ready" not in names
    config = await join_stream(
        catalog.stub.DownloadModel(
            catalog_pb2.DownloadModelRequest(caller_id="user_alice", model_id="tiny", path="config.json")
        )
    )
    assert json.loads(config)["model_type"] == "qwen2"
    with pytest.raises(NotFound):
        await join_stream(
            catalog.stub.DownloadModel(
                catalog_pb2.DownloadModelRequest(
                    caller_id="user_alice", model_id="tiny", path="../etc/passwd"
                )
            )
        )
    archive = await join_stream(
        catalog.stub.DownloadModel(catalog_pb2.DownloadModelRequest(caller_id="user_alice", model_id="tiny"))
    )
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {f"tiny/{name}" for name in names}
        weights = tar.extractfile(members["tiny/model.safetensors"])
        assert weights is not None and weights.read() == (tiny_model_dir / "model.safetensors").read_bytes()


async def test_register_an_adapter_on_a_base(catalog: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    await register(catalog.stub, str(tiny_model_dir), id="base")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (adapter / "adapter_model.safetensors").write_bytes((tiny_model_dir / "model.safetensors").read_bytes())
    with pytest.raises(InvalidRequest, match="base_model_id"):
        await register(catalog.stub, str(adapter), kind=catalog_pb2.MODEL_KIND_ADAPTER)
    model = await register(
        catalog.stub, str(adapter), id="lora", kind=catalog_pb2.MODEL_KIND_ADAPTER, base_model_id="base"
    )
    assert model.kind == catalog_pb2.MODEL_KIND_ADAPTER and model.architecture == "Qwen2ForCausalLM"
    assert model.base_model_id == "base"
