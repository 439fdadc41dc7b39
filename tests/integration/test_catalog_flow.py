"""Datasets and the model repository across the real platform (launcher, gateway, auth, catalog),
driven by the official `openai` client: upload a fine-tune file, see it validated, read it back,
and find the seed chat model ready."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import openai
import pytest

if TYPE_CHECKING:
    from conftest import Platform

pytestmark = pytest.mark.integration

SEED_CHAT_MODEL = "smollm2-135m-instruct"


@pytest.fixture
def api(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        yield client


def new_api_key(api: httpx.Client) -> str:
    """A new user, signed in, with an API key created over HTTP."""
    email, password = f"user-{uuid.uuid4().hex[:10]}@example.com", "correct-horse-1"
    assert api.post("/api/v1/auth/signup", json={"email": email, "password": password}).status_code == 201
    login = api.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    key = api.post(
        "/api/v1/api-keys",
        json={"name": "sdk"},
        headers={"Authorization": f"Bearer {login.json()['access_token']}"},
    )
    assert key.status_code == 201, key.text
    return str(key.json()["key"])


def openai_client(platform: Platform, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=key, max_retries=0)


def test_fine_tune_file_through_the_openai_client(
    platform: Platform, api: httpx.Client, tmp_path: Path
) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} + {i}?"},
                {"role": "assistant", "content": str(2 * i)},
            ]
        }
        for i in range(200)
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    client = openai_client(platform, new_api_key(api))

    with path.open("rb") as handle:
        created = client.files.create(file=handle, purpose="fine-tune")
    assert created.object == "file" and created.status == "processed"
    assert (created.filename, created.purpose, created.bytes) == (
        "train.jsonl",
        "fine-tune",
        path.stat().st_size,
    )
    validation = (created.model_extra or {})["validation"]
    assert validation["format"] == "openai_messages" and validation["examples"] == 200
    # The seed chat model is ready (so /readyz said), hence its tokenizer counted the tokens.
    assert validation["tokens"] > 0 and validation["tokenizer"] == SEED_CHAT_MODEL

    assert created.id in [f.id for f in client.files.list()]
    assert client.files.retrieve(created.id).bytes == created.bytes
    assert client.files.content(created.id).content == path.read_bytes()

    other = openai_client(platform, new_api_key(api))
    with pytest.raises(openai.NotFoundError):
        other.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(created.id)
    assert created.id not in [f.id for f in other.files.list()]

    deleted = client.files.delete(created.id)
    assert deleted.deleted and deleted.id == created.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)


def test_an_invalid_file_is_refused_with_its_line(
    platform: Platform, api: httpx.Client, tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "Hi"}]}\nnot json\n')
    client = openai_client(platform, new_api_key(api))
    with path.open("rb") as handle, pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=handle, purpose="fine-tune")
    assert refused.value.status_code == 400 and "line 2" in refused.value.message


def test_the_seed_chat_model_is_ready_and_default(platform: Platform, api: httpx.Client) -> None:
    key = new_api_key(api)
    response = api.get("/api/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    seed = {model["id"]: model for model in body["data"]}[SEED_CHAT_MODEL]
    assert (seed["state"], seed["is_default"], seed["owner"], seed["visibility"]) == (
        "ready",
        True,
        "system",
        "public",
    )
    assert seed["architecture"] == "LlamaForCausalLM" and seed["parameter_count"] > 100_000_000
    assert api.get("/readyz").json()["checks"]["seed_model"] == "ok"
