"""One user action is one trace across every service on its path, exported over OTLP to a real
receiver exactly as to Jaeger: a chat (gateway, auth, Ray Serve's proxy and the vLLM replica), a
fine-tune (gateway, catalog, scheduler, the trainer agent that runs it) and a document added to a
knowledge base (gateway, rag, its ingestion worker, the catalog it reads the file from)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

from suanli_common.otlp_receiver import OtlpReceiver, ReceivedSpan

if TYPE_CHECKING:
    from conftest import Platform

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SEED_CHAT_MODEL = "smollm2-135m-instruct"
READY_TIMEOUT_S = 420.0
IDENTITY = Path(__file__).resolve().parents[2] / "examples" / "identity.jsonl"


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def platform_env(otlp: OtlpReceiver) -> dict[str, str]:
    return {**otlp.exporter_env(), "SUANLI_SERVING": "true", "SUANLI_DEPLOY_SEED": "true"}


@pytest.fixture(scope="module")
def owner(platform: Platform) -> tuple[str, str, str]:
    """(user id, access token, API key)."""
    token, key = platform.new_user()
    me = httpx.get(f"{platform.base_url}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    return str(me.json()["user_id"]), token, key


@pytest.fixture(scope="module")
def api(platform: Platform, owner: tuple[str, str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=platform.base_url, timeout=120, headers={"Authorization": f"Bearer {owner[2]}"}
    ) as client:
        yield client


def gateway_request(method: str, route: str) -> Callable[[ReceivedSpan], bool]:
    """The root span of a request to `route` (the route template, as the span names it)."""
    return lambda span: (
        span.service == "suanli-gateway" and span.name == f"{method} {route}" and not span.parent_span_id
    )


def assert_connected(spans: list[ReceivedSpan]) -> ReceivedSpan:
    """Every span's parent is in the trace but the root's: one tree, not pieces. The root."""
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if not s.parent_span_id or s.parent_span_id not in ids]
    assert len(roots) == 1, f"the trace is in pieces: {[(s.service, s.name) for s in roots]}"
    return roots[0]


def named(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert found, f"no {name!r} span of {service}: {sorted({(s.service, s.name) for s in spans})}"
    return found[0]


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(1)
    pytest.fail(f"{what} within {timeout:.0f} s")


def test_a_chat_is_one_trace_from_the_gateway_into_the_replica(
    platform: Platform, otlp: OtlpReceiver, owner: tuple[str, str, str], api: httpx.Client
) -> None:
    def seed_ready() -> bool:
        listed = api.get("/api/v1/deployments").json()["data"]
        return any(d["model"] == SEED_CHAT_MODEL and d["status"] == "ready" for d in listed)

    try:
        wait_until(seed_ready, READY_TIMEOUT_S, "the seed deployment got ready")
    except BaseException:
        print(platform.output()[-8000:])
        raise
    # A key the gateway has never seen: it asks auth about it, inside the chat's trace.
    key = api.post(
        "/api/v1/api-keys", json={"name": "traced"}, headers={"Authorization": f"Bearer {owner[1]}"}
    )
    assert key.status_code == 201, key.text
    client = openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=key.json()["key"], max_retries=0)
    answer = client.chat.completions.create(
        model=SEED_CHAT_MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
    )
    assert answer.usage is not None and answer.usage.completion_tokens > 0

    spans = otlp.wait_for_trace(
        gateway_request("POST", "/v1/chat/completions"),
        {"suanli-gateway", "suanli-auth", "suanli-serve", "suanli-replica"},
        timeout=60,
    )
    root = assert_connected(spans)
    assert root.attributes.get("enduser.id") == owner[0], root.attributes
    call = named(spans, "suanli-gateway", f"chat {SEED_CHAT_MODEL}")
    assert call.attributes["gen_ai.operation.name"] == "chat"
    assert call.attributes["gen_ai.request.model"] == SEED_CHAT_MODEL
    assert call.attributes["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert call.attributes["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert str(call.attributes["suanli.deployment.id"]).startswith("dep_")
    by_id = {s.span_id: s for s in spans}
    # The replica's spans hang below the gateway's call, not beside it.
    below_call = [s for s in spans if s.service == "suanli-replica" and _descends_from(s, call, by_id)]
    assert below_call, sorted((s.service, s.name) for s in spans)


def _descends_from(span: ReceivedSpan, ancestor: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> bool:
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        if span.span_id == ancestor.span_id:
            return True
    return False


def test_a_fine_tune_is_one_trace_from_the_request_to_the_agent_that_runs_it(
    platform: Platform, otlp: OtlpReceiver, owner: tuple[str, str, str]
) -> None:
    client = openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=owner[2], max_retries=0, timeout=120)
    with IDENTITY.open("rb") as handle:
        training = client.files.create(file=handle, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=SEED_CHAT_MODEL, training_file=training.id, suffix="traced")
    wait_until(
        lambda: client.fine_tuning.jobs.retrieve(job.id).status == "running", 300, "the fine-tune started"
    )
    client.fine_tuning.jobs.cancel(job.id)  # the agent's run span ends with the run

    spans = otlp.wait_for_trace(
        gateway_request("POST", "/v1/fine_tuning/jobs"),
        {"suanli-gateway", "suanli-catalog", "suanli-scheduler", "suanli-trainer-agent"},
        timeout=120,
    )
    # The run span of this job (the receiver may hold the fine-tunes of other tests' traces).
    run = wait_until(
        lambda: next(
            (s for s in otlp.spans if s.name == "job.run" and s.trace_id == spans[0].trace_id), None
        ),
        120,
        "the agent's run span arrived",
    )
    spans = [s for s in otlp.spans if s.trace_id == run.trace_id]
    root = assert_connected(spans)
    assert root.attributes.get("enduser.id") == owner[0]
    assert run.service == "suanli-trainer-agent"
    assert run.attributes["enduser.id"] == owner[0]
    assert run.attributes["suanli.job.type"] == "JOB_TYPE_FINE_TUNE"
    assert run.attributes["suanli.job.status"] == "JOB_STATUS_CANCELLED"
    assert str(run.attributes["suanli.job.id"]).startswith("job_")
    # The agent's log lines are not spans of the trace: a fine-tune prints hundreds of them.
    assert not [s for s in spans if "logs." in s.name], sorted({s.name for s in spans})


def test_a_document_added_to_a_knowledge_base_is_one_trace_through_its_ingestion(
    platform: Platform, otlp: OtlpReceiver, owner: tuple[str, str, str]
) -> None:
    client = openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=owner[2], max_retries=0, timeout=120)
    store = client.vector_stores.create(name="traced")
    uploaded = client.files.create(
        file=("notes.md", b"# Notes\n\nThe launch code is ORCHID-42.\n"), purpose="assistants"
    )
    attached = client.vector_stores.files.create_and_poll(
        vector_store_id=store.id, file_id=uploaded.id, poll_interval_ms=200
    )
    assert attached.status == "completed", attached.last_error

    spans = otlp.wait_for_trace(
        gateway_request("POST", "/v1/vector_stores/{vector_store_id}/files"),
        {"suanli-gateway", "suanli-rag", "suanli-catalog"},
        timeout=60,
        names={("suanli-rag", "rag.ingest")},
    )
    assert_connected(spans)
    ingest = named(spans, "suanli-rag", "rag.ingest")
    assert ingest.attributes["suanli.file_id"] == uploaded.id
