"""/api/v1/jobs and /api/v1/gpus through the gateway, against the real scheduler (SQLite, NATS,
in-process gRPC) and a real trainer agent that runs real subprocesses and stores their output in
the LOGS stream."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest
from faststream.nats import NatsBroker

from conftest import NODE
from suanli_inference_gateway.clients.job_logs import JetStreamJobLogs

if TYPE_CHECKING:
    from conftest import Gateway


@pytest.fixture
async def jobs(cluster: Gateway, broker: NatsBroker) -> Gateway:
    """The gateway wired to the scheduler (`cluster`) and the LOGS stream."""
    cluster.deps.job_logs = JetStreamJobLogs(lambda: broker.config.connection_state.stream)
    return cluster


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def submit(gateway: Gateway, token: str, **body: Any) -> dict[str, Any]:
    response = await gateway.http.post("/api/v1/jobs", json={"name": "t", **body}, headers=bearer(token))
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


async def wait_status(gateway: Gateway, token: str, job_id: str, *statuses: str) -> dict[str, Any]:
    for _ in range(300):
        response = await gateway.http.get(f"/api/v1/jobs/{job_id}", headers=bearer(token))
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in statuses:
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job stuck in {job['status']}: {job['status_reason']}")


def parse_sse(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ": " not in line:
                continue
            name, value = line.split(": ", 1)
            fields[name] = value
        if fields:
            events.append(fields)
    return events


async def test_a_command_job_runs_and_its_log_streams_then_reads_as_text(jobs: Gateway) -> None:
    token = await jobs.sign_in()
    job = await submit(jobs, token, command="echo hello; sleep 0.5; echo oops >&2")
    assert job["id"].startswith("job_") and job["status"] in ("queued", "preparing", "running")
    assert job["max_runtime_minutes"] is None and job["job_type"] == "pytorch" and job["object"] == "job"

    # Followed from before the job runs: the stream ends on its own when the job does.
    response = await asyncio.wait_for(
        jobs.http.get(f"/api/v1/jobs/{job['id']}/logs", headers=bearer(token)), timeout=60
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    lines = [json.loads(e["data"]) for e in events if "event" not in e]
    assert [(x["line"], x["stream"]) for x in lines] == [("hello", "stdout"), ("oops", "stderr")]
    assert all(x["node"] == NODE and x["attempt"] == 1 for x in lines)
    assert all(e["id"].isdigit() for e in events if "event" not in e)
    assert events[-1]["event"] == "end"
    assert json.loads(events[-1]["data"])["status"] == "succeeded"

    done = await wait_status(jobs, token, job["id"], "succeeded")
    assert done["node_ids"] == [NODE] and done["attempt"] == 1
    assert done["started_at"] is not None and done["finished_at"] >= done["created_at"]

    text = await jobs.http.get(
        f"/api/v1/jobs/{job['id']}/logs", params={"follow": "false"}, headers=bearer(token)
    )
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert text.text == "hello\noops\n"

    # Resuming after the first line's id gives the rest only.
    first_id = next(e["id"] for e in events if "event" not in e)
    resumed = await jobs.http.get(
        f"/api/v1/jobs/{job['id']}/logs", headers={**bearer(token), "Last-Event-ID": first_id}
    )
    rest = [json.loads(e["data"])["line"] for e in parse_sse(resumed.text) if "event" not in e]
    assert rest == ["oops"]

    listed = await jobs.http.get("/api/v1/jobs", headers=bearer(token))
    assert [j["id"] for j in listed.json()["data"]] == [job["id"]]


async def test_an_idempotency_key_makes_a_retry_return_the_same_job(jobs: Gateway) -> None:
    token = await jobs.sign_in()
    headers = {**bearer(token), "Idempotency-Key": "retry-me"}
    body = {"name": "once", "command": "true"}
    first = await jobs.http.post("/api/v1/jobs", json=body, headers=headers)
    again = await jobs.http.post("/api/v1/jobs", json=body, headers=headers)
    other = await jobs.http.post("/api/v1/jobs", json=body, headers=bearer(token))
    assert first.status_code == again.status_code == other.status_code == 201
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]


async def test_cancel_stops_a_running_job(jobs: Gateway) -> None:
    token = await jobs.sign_in()
    job = await submit(jobs, token, command="echo started; sleep 60", max_runtime_minutes=30)
    assert job["max_runtime_minutes"] == 30
    await wait_status(jobs, token, job["id"], "running")
    response = await jobs.http.post(f"/api/v1/jobs/{job['id']}/cancel", headers=bearer(token))
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert (await wait_status(jobs, token, job["id"], "cancelled"))["finished_at"] is not None
    logs = await asyncio.wait_for(
        jobs.http.get(f"/api/v1/jobs/{job['id']}/logs", headers=bearer(token)), timeout=30
    )
    end = parse_sse(logs.text)[-1]
    assert end["event"] == "end" and json.loads(end["data"])["status"] == "cancelled"


async def test_another_users_job_is_not_found(jobs: Gateway) -> None:
    ada = await jobs.sign_in()
    bob = await jobs.sign_in("bob@example.com")
    job = await submit(jobs, ada, command="echo secret")
    path = f"/api/v1/jobs/{job['id']}"
    for method, url, params in [
        ("GET", path, {}),
        ("GET", f"{path}/logs", {}),
        ("GET", f"{path}/logs", {"follow": "false"}),
        ("POST", f"{path}/cancel", {}),
    ]:
        response = await jobs.http.request(method, url, params=params, headers=bearer(bob))
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["error"]["type"] == "not_found_error"
    assert (await jobs.http.get("/api/v1/jobs", headers=bearer(bob))).json()["data"] == []
    await wait_status(jobs, ada, job["id"], "succeeded")  # bob's cancel did nothing


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"command": "true", "gpus_per_node": 0}, "gpus_per_node"),
        ({"command": "true", "gpu_type": "h100"}, "gpu_type"),  # the scheduler's InvalidRequest
        ({"name": "nothing to run"}, "command"),
        ({"command": "true", "max_runtime_minutes": 0}, "max_runtime_minutes"),
        ({"command": "true", "colour": "blue"}, "colour"),
        ({"command": "true", "job_type": "tensorflow"}, "job_type"),
        ({"command": "true", "gpus_per_node": 3}, "gpus_per_node"),  # more than any node has
        ({"command": "true", "env": {"RANK": "7"}}, "env"),
        ({"command": "true", "ckpt_path": "../escape"}, "ckpt_path"),
    ],
)
async def test_bad_jobs_are_400_with_their_param(jobs: Gateway, body: dict[str, Any], param: str) -> None:
    token = await jobs.sign_in()
    response = await jobs.http.post("/api/v1/jobs", json=body, headers=bearer(token))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


async def test_jobs_need_a_credential(jobs: Gateway) -> None:
    assert (await jobs.http.get("/api/v1/jobs")).status_code == 401
    assert (await jobs.http.get("/api/v1/gpus")).status_code == 401


async def test_gpus_list_the_agents_slots(jobs: Gateway) -> None:
    token = await jobs.sign_in()
    response = await jobs.http.get("/api/v1/gpus", headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == [
        {"node_id": NODE, "gpu_type": "cpu", "total": 2, "used": 0, "free": 2, "memory_mb": 0}
    ]
    assert body["by_type"] == [{"gpu_type": "cpu", "nodes": 1, "total": 2, "used": 0, "free": 2}]

    job = await submit(jobs, token, command="sleep 30")
    await wait_status(jobs, token, job["id"], "running")
    for _ in range(50):  # the agent's next heartbeat counts the slot as used
        slots = (await jobs.http.get("/api/v1/gpus", headers=bearer(token))).json()["data"][0]
        if slots["used"] == 1:
            break
        await asyncio.sleep(0.1)
    assert slots["used"] == 1 and slots["free"] == 1
    await jobs.http.post(f"/api/v1/jobs/{job['id']}/cancel", headers=bearer(token))


async def test_without_a_scheduler_jobs_are_503(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    response = await gateway.http.get("/api/v1/jobs", headers=bearer(token))
    assert response.status_code == 503 and response.json()["error"]["type"] == "service_unavailable_error"
