"""The dev lab across the real platform (launcher, nats-server, auth, catalog, scheduler, a trainer
agent with two CPU slots, gateway): a JupyterLab instance with the seed model mounted, reached
only through the gateway and only by its owner, running a cell over the kernel's WebSocket that
lists the mounted model's files, keeping its workspace across a stop and a start, and deleted; a
TensorBoard instance over a finished fine-tune, whose loss scalars its HTTP API serves; the
LLaMA-Factory kind, running where the node has it and refused with the reason where it has not;
and the requests that must be refused."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from websockets.asyncio.client import connect

if TYPE_CHECKING:
    from conftest import Platform

# Copying the seed model in, starting JupyterLab and a small fine-tune take minutes on a loaded machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

SEED_CHAT_MODEL = "smollm2-135m-instruct"
IDENTITY = Path(__file__).resolve().parents[2] / "examples" / "identity.jsonl"
START_TIMEOUT_S = 600.0


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@pytest.fixture(scope="module")
def owner(platform: Platform) -> tuple[str, str]:
    return platform.new_user()


@pytest.fixture(scope="module")
def api(platform: Platform, owner: tuple[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.base_url, timeout=60, headers=bearer(owner[1])) as client:
        yield client


def create(api: httpx.Client, **body: Any) -> dict[str, Any]:
    response = api.post("/api/v1/instances", json=body)
    assert response.status_code == 201, response.text
    instance: dict[str, Any] = response.json()
    return instance


def wait_instance(
    api: httpx.Client, instance_id: str, *statuses: str, timeout: float = START_TIMEOUT_S
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/api/v1/instances/{instance_id}")
        assert response.status_code == 200, response.text
        instance: dict[str, Any] = response.json()
        if instance["status"] in statuses:
            return instance
        if instance["status"] == "failed" or time.monotonic() > deadline:
            log = api.get(f"/api/v1/instances/{instance_id}/logs").text[-3000:]
            raise AssertionError(f"instance is {instance['status']}: {instance['status_reason']}\n{log}")
        time.sleep(1)


def execute(ws_url: str, headers: dict[str, str], code: str) -> tuple[str, dict[str, Any]]:
    """Runs `code` in a kernel over its channels WebSocket (the Jupyter messaging protocol, JSON
    frames); returns what it printed and its execute_reply."""

    async def run() -> tuple[str, dict[str, Any]]:
        msg_id = uuid.uuid4().hex
        request = {
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": "test",
                "session": uuid.uuid4().hex,
                "version": "5.3",
                "date": "",
            },
            "parent_header": {},
            "metadata": {},
            "content": {"code": code, "silent": False, "store_history": False, "allow_stdin": False},
            "channel": "shell",
            "buffers": [],
        }
        printed, reply, idle = [], None, False
        async with connect(ws_url, additional_headers=headers, proxy=None, open_timeout=30) as ws:
            await ws.send(json.dumps(request))
            async with asyncio.timeout(120):
                while reply is None or not idle:
                    message = json.loads(await ws.recv())
                    if message.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    kind = message["header"]["msg_type"]
                    if kind == "stream":
                        printed.append(message["content"]["text"])
                    elif kind == "error":
                        printed.append("\n".join(message["content"]["traceback"]))
                    elif kind == "execute_reply":
                        reply = message["content"]
                    elif kind == "status" and message["content"]["execution_state"] == "idle":
                        idle = True
        return "".join(printed), reply

    return asyncio.run(run())


LIST_MODEL = """
import json, os
path = os.environ["SUANLI_MODEL_PATH"]
print(json.dumps({"path": path, "files": sorted(os.listdir(path)), "cwd": os.getcwd()}))
"""


def test_a_jupyterlab_instance_runs_a_cell_over_the_mounted_seed_model_for_its_owner_only(
    platform: Platform, api: httpx.Client, owner: tuple[str, str]
) -> None:
    token, key = owner
    other_token, _ = platform.new_user()
    created = create(
        api,
        name="lab",
        kind="jupyterlab",
        cpu=1,
        memory_gb=2,
        storage_gb=2,
        mounts={"models": [SEED_CHAT_MODEL]},
    )
    assert created["status"] in ("queued", "starting") and created["url"] == f"/instances/{created['id']}/lab"
    [mount] = created["mounts"]
    assert mount["kind"] == "model" and mount["path"].endswith(f"/models/{SEED_CHAT_MODEL}")
    lab = wait_instance(api, created["id"], "running")
    assert lab["started_at"] and lab["node_id"]
    assert created["id"] in [i["id"] for i in api.get("/api/v1/instances").json()["data"]]

    base = f"{platform.base_url}/instances/{lab['id']}/"
    anonymous = httpx.get(base + "api/status")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "missing_credentials"
    forged = httpx.get(base + "api/status", headers={"Authorization": "token not-suanli"})
    assert forged.status_code == 401
    assert httpx.get(base + "api/status", headers=bearer(other_token)).status_code == 404
    assert api.get(f"/api/v1/instances/{lab['id']}", headers=bearer(other_token)).status_code == 404
    status = httpx.get(base + "api/status", headers=bearer(key))
    assert status.status_code == 200 and "started" in status.json(), status.text

    # A browser: the session cookie opens the lab's page; a page of another site cannot use it.
    with httpx.Client(base_url=platform.base_url, timeout=60) as browser:
        opened = browser.post(f"/api/v1/instances/{lab['id']}/session", headers=bearer(token))
        assert opened.status_code == 204, opened.text
        page = browser.get(f"/instances/{lab['id']}/lab")
        assert page.status_code == 200 and "JupyterLab" in page.text
        evil = browser.post(
            f"/instances/{lab['id']}/api/kernels", json={}, headers={"Origin": "https://evil.example"}
        )
        assert evil.status_code == 403
        # The cookie is sent to this instance's path only.
        assert browser.get(f"/instances/inst_{'0' * 26}/api/status").status_code == 401

    kernel = httpx.post(base + "api/kernels", json={"name": "python3"}, headers=bearer(key), timeout=60)
    assert kernel.status_code == 201, kernel.text
    ws_url = base.replace("http://", "ws://") + f"api/kernels/{kernel.json()['id']}/channels"
    printed, reply = execute(ws_url, bearer(key), LIST_MODEL)
    assert reply["status"] == "ok", printed
    listing = json.loads(printed.strip().splitlines()[-1])
    assert listing["path"] == mount["path"]
    assert "config.json" in listing["files"] and any(f.endswith(".safetensors") for f in listing["files"])
    # Without credentials the kernel's socket does not open.
    with pytest.raises(Exception, match="403"):
        execute(ws_url, {}, "print(1)")

    note = httpx.put(
        base + "api/contents/work/notes.txt",
        json={"type": "file", "format": "text", "content": "kept across a stop"},
        headers=bearer(key),
    )
    assert note.status_code in (200, 201), note.text

    stopped = api.post(f"/api/v1/instances/{lab['id']}/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] in ("stopping", "stopped")
    wait_instance(api, lab["id"], "stopped")
    closed = httpx.get(base + "api/status", headers=bearer(key))
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "instance_not_running"

    assert api.post(f"/api/v1/instances/{lab['id']}/start").status_code == 200
    wait_instance(api, lab["id"], "running")
    kept = httpx.get(base + "api/contents/work/notes.txt", headers=bearer(key))
    assert kept.status_code == 200 and kept.json()["content"] == "kept across a stop"
    models = httpx.get(base + "api/contents/models", headers=bearer(key)).json()
    assert [m["name"] for m in models["content"]] == [SEED_CHAT_MODEL]

    deleted = api.delete(f"/api/v1/instances/{lab['id']}")
    assert deleted.status_code == 200
    assert api.get(f"/api/v1/instances/{lab['id']}").status_code == 404
    assert httpx.get(base + "api/status", headers=bearer(key)).status_code == 404
    deadline = time.monotonic() + 60
    while Path(lab["storage_path"]).exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not Path(lab["storage_path"]).exists()


def test_a_tensorboard_instance_shows_the_loss_of_a_finished_fine_tune(
    api: httpx.Client, platform: Platform
) -> None:
    with IDENTITY.open("rb") as handle:
        uploaded = api.post("/v1/files", files={"file": handle}, data={"purpose": "fine-tune"})
    assert uploaded.status_code == 200, uploaded.text
    job = api.post(
        "/v1/fine_tuning/jobs",
        json={
            "model": SEED_CHAT_MODEL,
            "training_file": uploaded.json()["id"],
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
        },
    )
    assert job.status_code == 200, job.text
    job_id = job.json()["id"]
    deadline = time.monotonic() + 900
    while (status := api.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"]) not in (
        "succeeded",
        "failed",
        "cancelled",
    ):
        assert time.monotonic() < deadline, "the fine-tune did not end"
        time.sleep(2)
    assert status == "succeeded"

    board = create(
        api, name="board", kind="tensorboard", cpu=0.5, memory_gb=1, storage_gb=0, mounts={"jobs": [job_id]}
    )
    assert board["mounts"] == [{"kind": "job", "id": job_id, "path": board["mounts"][0]["path"]}]
    wait_instance(api, board["id"], "running")
    prefix = f"/instances/{board['id']}/data/plugin/scalars"
    deadline = time.monotonic() + 120
    while True:  # TensorBoard reads the event files a moment after it starts
        tags = api.get(f"{prefix}/tags")
        assert tags.status_code == 200, tags.text
        runs = {run: sorted(found) for run, found in tags.json().items() if "train/loss" in found}
        if runs or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(runs) == 1, tags.json()
    [run] = runs
    assert run.startswith(job_id)
    scalars = api.get(f"{prefix}/scalars", params={"run": run, "tag": "train/loss"})
    assert scalars.status_code == 200, scalars.text
    points = scalars.json()  # [[wall_time, step, value], ...]
    assert len(points) >= 1 and all(p[2] > 0 for p in points)
    assert [p[1] for p in points] == sorted(p[1] for p in points)
    assert api.delete(f"/api/v1/instances/{board['id']}").status_code == 200


def test_the_llamafactory_kind_runs_where_the_node_has_it_and_is_refused_with_the_reason_elsewhere(
    api: httpx.Client,
) -> None:
    response = api.post(
        "/api/v1/instances", json={"name": "factory", "kind": "llamafactory", "cpu": 1, "memory_gb": 4}
    )
    if not os.environ.get("SUANLI_LLAMAFACTORY_CLI"):
        # This node's agent runs without LLaMA-Factory (its pins break the agent's environment).
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "kind"
        assert "the llamafactory package is not installed on node" in error["message"], error
        return
    assert response.status_code == 201, response.text
    factory = wait_instance(api, response.json()["id"], "running")
    page = api.get(f"/instances/{factory['id']}/config")
    assert page.status_code == 200 and page.json()["root"].endswith(f"/instances/{factory['id']}")
    assert api.delete(f"/api/v1/instances/{factory['id']}").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"cpu": 512}, 400, "cpu"),
        ({"memory_gb": 50_000}, 400, "memory_gb"),
        ({"gpus": 8}, 400, "gpus"),
        ({"kind": "vscode"}, 400, "kind"),
        ({"mounts": {"models": ["no-such-model"]}}, 400, "mounts.models"),
        ({"mounts": {"datasets": ["file-nope"]}}, 400, "mounts.datasets"),
        ({"mounts": {"jobs": ["job_nope"]}}, 400, "mounts.jobs"),
    ],
)
def test_bad_instances_are_refused_with_clear_errors(
    api: httpx.Client, body: dict[str, Any], status: int, param: str
) -> None:
    response = api.post("/api/v1/instances", json={"name": "bad", "kind": "jupyterlab", **body})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"], error


def test_a_name_is_taken_once_and_another_users_instance_is_not_found(
    api: httpx.Client, platform: Platform
) -> None:
    other_token, _ = platform.new_user()
    board = create(api, name="twice", kind="jupyterlab", cpu=0.5, memory_gb=1, storage_gb=0)
    clash = api.post("/api/v1/instances", json={"name": "twice", "kind": "jupyterlab"})
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "instance_exists"
    for method, path in (
        ("GET", ""),
        ("POST", "/stop"),
        ("POST", "/start"),
        ("DELETE", ""),
        ("POST", "/session"),
        ("GET", "/logs"),
    ):
        foreign = api.request(method, f"/api/v1/instances/{board['id']}{path}", headers=bearer(other_token))
        assert foreign.status_code == 404, (method, path, foreign.text)
    assert api.delete(f"/api/v1/instances/{board['id']}").status_code == 200
