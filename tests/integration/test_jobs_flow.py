"""Custom jobs over HTTP against the real platform (launcher, nats-server, auth, scheduler, one
trainer agent with two CPU slots, gateway): sign up, see the inventory, submit a command job,
follow its log to the end over SSE, read it back as text, and find the job succeeded."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import Platform

pytestmark = pytest.mark.integration


@pytest.fixture
def api(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.base_url, timeout=10) as client:
        email = f"jobs-{uuid.uuid4().hex[:10]}@example.com"
        password = "correct-horse-1"
        created = client.post("/api/v1/auth/signup", json={"email": email, "password": password})
        assert created.status_code == 201, created.text
        login = client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        yield client


def wait_for_slots(api: httpx.Client, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.get("/api/v1/gpus")
        assert response.status_code == 200, response.text
        if response.json()["data"]:
            data: list[dict[str, Any]] = response.json()["data"]
            return data
        time.sleep(0.5)
    raise AssertionError("no agent's slots showed up in /api/v1/gpus")


def test_a_command_job_runs_and_its_log_follows_to_the_end(api: httpx.Client) -> None:
    slots = wait_for_slots(api)
    assert [(s["gpu_type"], s["total"]) for s in slots] == [("cpu", 2)]
    assert slots[0]["used"] + slots[0]["free"] == 2

    submitted = api.post(
        "/api/v1/jobs",
        json={
            "name": "hello",
            "command": "echo hello from $RANK of $WORLD_SIZE; sleep 1; echo oops >&2",
            "job_type": "pytorch",
            "nodes": 1,
            "gpus_per_node": 1,
            "model_save_path": "out",
            "env": {"GREETING": "hi"},
        },
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert submitted.status_code == 201, submitted.text
    job = submitted.json()
    assert job["status"] in ("queued", "preparing", "running") and job["max_runtime_minutes"] is None

    events: list[tuple[str, dict[str, Any]]] = []
    event = "message"
    with api.stream("GET", f"/api/v1/jobs/{job['id']}/logs", timeout=60) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((event, json.loads(line.removeprefix("data: "))))
                event = "message"
    lines = [(data["line"], data["stream"]) for kind, data in events if kind == "message"]
    assert lines == [("hello from 0 of 1", "stdout"), ("oops", "stderr")]
    assert events[-1][0] == "end" and events[-1][1]["status"] == "succeeded"

    done = api.get(f"/api/v1/jobs/{job['id']}")
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == "succeeded" and body["attempt"] == 1 and len(body["node_ids"]) == 1
    assert body["finished_at"] >= body["started_at"] >= body["created_at"]
    assert body["output_path"].endswith(f"{job['id']}/out")

    text = api.get(f"/api/v1/jobs/{job['id']}/logs", params={"follow": "false"})
    assert text.status_code == 200 and text.text == "hello from 0 of 1\noops\n"

    assert job["id"] in [j["id"] for j in api.get("/api/v1/jobs").json()["data"]]
    deadline = time.monotonic() + 10
    while True:  # the slot is given back with the agent's next heartbeat
        inventory = api.get("/api/v1/gpus").json()
        if inventory["by_type"][0]["used"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert inventory["by_type"] == [{"gpu_type": "cpu", "nodes": 1, "total": 2, "used": 0, "free": 2}]
