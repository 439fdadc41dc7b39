"""Custom jobs over HTTP against the real platform (launcher, nats-server, auth, scheduler, one
trainer agent with two CPU slots, gateway): sign up, see the inventory, submit a command job,
follow its log to the end over SSE, read it back as text, and find the job succeeded. Then `mpi`
jobs on a platform with a second agent: mpirun across both nodes, and a node without Open MPI."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import LaunchPlatform, Platform

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


# ---- mpi jobs across two agents of this machine ------------------------------------------------------

needs_mpirun = pytest.mark.skipif(
    shutil.which("mpirun") is None, reason="Open MPI (openmpi-bin) is not installed"
)
WORKER_NODE = "mpi-worker-node"


@dataclass
class TwoNodes:
    """A platform (whose agent is one node) and a second trainer agent on its bus: two nodes of 2 slots."""

    platform: Platform
    agent: subprocess.Popen[bytes]
    agent_log: Path


@pytest.fixture
def two_nodes(launch_platform: LaunchPlatform, tmp_path: Path) -> Iterator[TwoNodes]:
    # A platform of its own: the second node must not show up in the other tests' inventory.
    platform = launch_platform(home=tmp_path / "mpi-home")
    env = {
        **os.environ,
        "SUANLI_HOME": str(platform.home),  # the same volumes folder: storage shared by the nodes
        "SUANLI_NATS_URL": f"nats://127.0.0.1:{platform.nats_port}",
        "SUANLI_NODE_ID": WORKER_NODE,
        "SUANLI_AGENT_SLOTS": "cpu:2",
        "SUANLI_AGENT_METRICS_PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }
    with open(tmp_path / "second-agent.log", "wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "suanli_trainer_agent"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield TwoNodes(platform, agent, tmp_path / "second-agent.log")
    finally:  # before the platform stops (its fixture was set up first)
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()


@contextlib.contextmanager
def signed_in(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        email, password = f"mpi-{uuid.uuid4().hex[:10]}@example.com", "correct-horse-1"
        assert (
            client.post("/api/v1/auth/signup", json={"email": email, "password": password}).status_code == 201
        )
        login = client.post("/api/v1/auth/login", json={"email": email, "password": password})
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        yield client


def wait_for_job(api: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = api.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled", "timed_out"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not end within {timeout}s: {job}")


def submit(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"name": "mpi", "job_type": "mpi", "gpus_per_node": 2, "model_save_path": "out", **fields}
    submitted = api.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert submitted.status_code == 201, submitted.text
    job: dict[str, Any] = submitted.json()
    return job


@needs_mpirun
def test_an_mpi_job_runs_mpirun_over_both_nodes(two_nodes: TwoNodes) -> None:
    with signed_in(two_nodes.platform.base_url) as api:
        run_mpirun_over_both_nodes(api, two_nodes)


def run_mpirun_over_both_nodes(api: httpx.Client, two_nodes: TwoNodes) -> None:
    deadline = time.monotonic() + 60
    while api.get("/api/v1/gpus").json()["by_type"] != [
        {"gpu_type": "cpu", "nodes": 2, "total": 4, "used": 0, "free": 4}
    ]:
        assert time.monotonic() < deadline, two_nodes.agent_log.read_text()
        time.sleep(0.5)

    report = (
        "echo rank $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE on node $NODE_RANK via $SUANLI_MPI_HOST"
    )
    job = submit(api, command=f"mpirun sh -c '{report}'", nodes=2)
    done = wait_for_job(api, job["id"])
    text = api.get(f"/api/v1/jobs/{job['id']}/logs", params={"follow": "false"}).text
    assert done["status"] == "succeeded", (done, text)
    assert len(done["node_ids"]) == 2 and WORKER_NODE in done["node_ids"]

    # Every rank's output comes back through mpirun on node rank 0; the two ranks of node rank 1 ran
    # in that node's job (its NODE_RANK), under the orted its worker started for mpirun.
    launcher_node, worker_node = done["node_ids"]
    ranks = sorted(
        (m["rank"], m["size"], m["node"], m["host"])
        for m in re.finditer(
            r"^\[(?P<at>[^\]]+)\] rank (?P<rank>\d) of (?P<size>\d) on node (?P<node>\d) via (?P<host>\S+)$",
            text,
            re.MULTILINE,
        )
        if m["at"] == launcher_node
    )
    assert [r[:3] for r in ranks] == [("0", "4", "0"), ("1", "4", "0"), ("2", "4", "1"), ("3", "4", "1")], (
        text
    )
    assert [r[3] for r in ranks[2:]] == ["suanli-node-1", "suanli-node-1"], text
    assert f"[{worker_node}] mpi worker: suanli-node-1 starts `orted` for mpirun" in text.splitlines(), text
    assert f"[{launcher_node}] mpi launcher: mpirun exited with 0" in text.splitlines(), text


@needs_mpirun
def test_an_mpi_job_on_a_node_without_mpirun_fails_saying_why(api: httpx.Client) -> None:
    # The job's PATH (the agent puts its Python's folder first) leads to no Open MPI.
    job = submit(api, command="hostname", nodes=1, env={"PATH": "/nonexistent"})
    done = wait_for_job(api, job["id"], timeout=60)
    assert done["status"] == "failed", done
    assert "`mpirun` is not on this node's PATH" in done["status_reason"], done
    assert "exited with code 127" in done["status_reason"], done
    text = api.get(f"/api/v1/jobs/{job['id']}/logs", params={"follow": "false"}).text
    assert "mpi job: `mpirun` is not on this node's PATH" in text, text
