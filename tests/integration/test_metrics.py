"""Prometheus metrics of the real platform: after a little work (sign up, index a document, run a
custom job) every process's /metrics answers in Prometheus text, and what it says agrees with the
work done and with the API (the gateway on its HTTP port, the others on their metrics ports)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from conftest import Platform

pytestmark = pytest.mark.integration

Samples = dict[str, list[tuple[dict[str, str], float]]]  # sample name -> (labels, value) each


def scrape(url: str) -> tuple[set[str], Samples]:
    """The metric families named at `url` (counters without `_total`) and their samples."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:200]}"
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    families = list(text_string_to_metric_families(response.text))
    samples: Samples = {}
    for family in families:
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return {family.name for family in families}, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples that carry these labels (0 when there is none)."""
    return sum(v for have, v in samples.get(name, []) if labels.items() <= have.items())


def eventually(read: Callable[[], Any], ok: Callable[[Any], bool], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = read()
        if ok(got):
            return got
        assert time.monotonic() < deadline, f"{what}: still {got}"
        time.sleep(0.5)


def test_every_service_serves_its_metrics(platform: Platform) -> None:
    token, key = platform.new_user()
    api = httpx.Client(base_url=platform.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    client = openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=key, max_retries=0, timeout=120)

    # A document through the catalog into the rag service's ingestion.
    store = client.vector_stores.create(name="notes")
    uploaded = client.files.create(
        file=("notes.md", b"# Notes\n\nThe scheduler places jobs on GPU slots of the ledger.\n"),
        purpose="assistants",
    )
    attached = client.vector_stores.files.create_and_poll(
        vector_store_id=store.id, file_id=uploaded.id, poll_interval_ms=200
    )
    assert attached.status == "completed", attached.last_error

    # A custom job through the scheduler onto the trainer agent, to its end.
    submitted = api.post(
        "/api/v1/jobs",
        json={
            "name": "metrics",
            "command": "echo counted",
            "job_type": "pytorch",
            "nodes": 1,
            "gpus_per_node": 1,
        },
    )
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    eventually(
        lambda: api.get(f"/api/v1/jobs/{job_id}").json()["status"],
        lambda status: status in ("succeeded", "failed", "cancelled", "timed_out"),
        "the job never ended",
    )
    assert api.get(f"/api/v1/jobs/{job_id}").json()["status"] == "succeeded"

    local = "http://127.0.0.1"
    # ---- the gateway, on its public HTTP port --------------------------------------------------------
    families, gateway = scrape(f"{platform.base_url}/metrics")
    assert {"suanli_http_requests", "suanli_http_request_duration_seconds", "suanli_tokens"} <= families
    assert (
        value(gateway, "suanli_http_requests_total", method="POST", route="/api/v1/auth/login", status="200")
        >= 1
    )
    # The route template, never the job's path.
    polled = value(
        gateway, "suanli_http_requests_total", method="GET", route="/api/v1/jobs/{job_id}", status="200"
    )
    assert polled >= 2
    assert not [labels for labels, _ in gateway["suanli_http_requests_total"] if job_id in labels["route"]]
    assert value(gateway, "suanli_http_request_duration_seconds_count", route="/v1/files") >= 1
    assert "faststream_published_messages" in families  # the bus's counts, FastStream's names

    # ---- auth -----------------------------------------------------------------------------------------
    families, auth = scrape(f"{local}:{platform.auth_metrics_port}/metrics")
    grpc_total = "suanli_grpc_server_requests_total"
    assert {"suanli_grpc_server_requests", "suanli_grpc_server_request_duration_seconds"} <= families
    assert value(auth, grpc_total, method="suanli.v1.AuthService/Login", code="OK") >= 1
    assert value(auth, grpc_total, method="suanli.v1.AuthService/SignUp", code="OK") >= 1
    assert (
        value(auth, "suanli_grpc_server_request_duration_seconds_count", method="suanli.v1.AuthService/Login")
        >= 1
    )
    # user.created and the rest went out through the outbox relay's broker.
    assert value(auth, "faststream_published_messages_total", app_name="suanli-auth", status="success") >= 1

    # ---- catalog --------------------------------------------------------------------------------------
    _, catalog = scrape(f"{local}:{platform.catalog_metrics_port}/metrics")
    assert value(catalog, grpc_total, method="suanli.v1.CatalogService/UploadFile", code="OK") >= 1

    # ---- scheduler --------------------------------------------------------------------------------
    families, scheduler = scrape(f"{local}:{platform.scheduler_metrics_port}/metrics")
    assert {"suanli_gpu_slots", "suanli_jobs", "suanli_queue_depth"} <= families
    assert value(scheduler, grpc_total, method="suanli.v1.SchedulerService/SubmitJob", code="OK") >= 1
    assert value(scheduler, "suanli_jobs", kind="pytorch", state="succeeded") == 1
    assert value(scheduler, "suanli_queue_depth", kind="pytorch") == 0
    # The job's placement and reports ran under the state lock: its saturation counters moved.
    assert value(scheduler, "suanli_scheduler_state_lock_acquisitions_total") >= 1
    assert value(scheduler, "suanli_scheduler_state_lock_held_seconds_total") > 0
    # Slots agree with /api/v1/gpus, node by node (the job's slot may come back between the reads).
    inventory = api.get("/api/v1/gpus").json()["data"]
    assert inventory, "no node in /api/v1/gpus"
    for node in inventory:
        labels = {"node": node["node_id"], "gpu_type": node["gpu_type"]}
        used = value(scheduler, "suanli_gpu_slots", state="used", **labels)
        free = value(scheduler, "suanli_gpu_slots", state="free", **labels)
        assert used + free == node["total"] == node["used"] + node["free"], (node, used, free)

    # ---- rag ------------------------------------------------------------------------------------------
    _, rag = scrape(f"{local}:{platform.rag_metrics_port}/metrics")
    assert value(rag, "suanli_rag_documents_ingested_total", status="completed") == 1
    assert value(rag, "suanli_rag_documents_ingested_total", status="failed") == 0
    assert value(rag, "suanli_rag_ingestion_backlog") == 0
    assert value(rag, grpc_total, method="suanli.v1.RagService/AddDocument", code="OK") >= 1

    # ---- the trainer agent ----------------------------------------------------------------------------
    agent_url = f"{local}:{platform.agent_metrics_port}/metrics"
    _, agent = eventually(  # the finished attempt lets its slot go at once; wait out a slow machine
        lambda: scrape(agent_url),
        lambda got: value(got[1], "suanli_agent_running_jobs") == 0,
        "the agent still runs a job",
    )
    assert value(agent, "suanli_agent_slots", gpu_type="cpu", state="free") == 2  # SUANLI_AGENT_SLOTS=cpu:2
    assert value(agent, "suanli_agent_slots", gpu_type="cpu", state="used") == 0
    # The bus: heartbeats are the agent's steady traffic; the job's log lines count under one
    # label for every job.
    published = "faststream_published_messages_total"
    assert value(agent, published, app_name="suanli-trainer-agent", destination="agent.heartbeat") >= 1
    assert value(agent, published, destination="logs.job") >= 1
    assert not [labels for labels, _ in agent[published] if job_id in labels["destination"]]

    # Only /metrics is served on a metrics port.
    assert httpx.get(f"{local}:{platform.auth_metrics_port}/", timeout=10).status_code == 404
    api.close()
