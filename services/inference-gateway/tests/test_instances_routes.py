"""/api/v1/instances through the gateway against the real catalog (mounts are checked there), the
real scheduler and a real trainer agent that starts a real TensorBoard, reached through the
gateway's /instances/{id}/."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from suanli_catalog.main import RunningCatalog
from suanli_catalog.seed import TINY
from suanli_common.grpc import make_channel
from suanli_common.proto.suanli.v1 import scheduler_pb2_grpc
from suanli_inference_gateway.clients.instances import IDEMPOTENT_METHODS, InstancesClient
from suanli_inference_gateway.clients.scheduler import SCHEDULER_SERVICE
from suanli_inference_gateway.platform.instances.proxy import InstanceProxy
from suanli_scheduler.main import SchedulerApp

if TYPE_CHECKING:
    from conftest import Gateway

ROW = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


@pytest.fixture
def catalog_address(catalog: RunningCatalog) -> str:
    return catalog.address


@pytest.fixture
async def lab(cluster: Gateway, scheduler: SchedulerApp) -> AsyncIterator[Gateway]:
    """The gateway with the instances' API and proxy wired to the real scheduler."""
    channel = make_channel(
        f"127.0.0.1:{scheduler.port}",
        timeout=10.0,
        service=SCHEDULER_SERVICE,
        idempotent_methods=IDEMPOTENT_METHODS,
    )
    instances = InstancesClient(scheduler_pb2_grpc.SchedulerServiceStub(channel))
    async with httpx.AsyncClient(trust_env=False) as client:
        cluster.deps.instances = instances
        cluster.deps.instance_proxy = InstanceProxy(instances, cluster.deps.authenticator, client)
        yield cluster
    await channel.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def upload(gateway: Gateway, token: str, name: str) -> str:
    data = json.dumps(ROW).encode() + b"\n"
    response = await gateway.http.post(
        "/v1/files",
        files={"file": (name, io.BytesIO(data), "application/jsonl")},
        data={"purpose": "fine-tune"},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text
    file_id: str = response.json()["id"]
    return file_id


async def wait_status(gateway: Gateway, token: str, path: str, status: str) -> dict[str, Any]:
    for _ in range(600):
        response = await gateway.http.get(path, headers=bearer(token))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] == status:
            return body
        assert body["status"] != "failed", body
        await asyncio.sleep(0.2)
    raise AssertionError(f"stuck in {body['status']}: {body['status_reason']}")


async def test_an_instance_mounts_what_its_owner_may_read_and_is_served_through_the_gateway(
    lab: Gateway,
) -> None:
    token = await lab.sign_in()
    job = await lab.http.post("/api/v1/jobs", json={"name": "t", "command": "echo hi"}, headers=bearer(token))
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    await wait_status(lab, token, f"/api/v1/jobs/{job_id}", "succeeded")
    first, second = await upload(lab, token, "train.jsonl"), await upload(lab, token, "train.jsonl")

    response = await lab.http.post(
        "/api/v1/instances",
        json={
            "name": "board",
            "kind": "tensorboard",
            "cpu": 0.5,
            "memory_gb": 1,
            "storage_gb": 1,
            "mounts": {"models": [TINY.id], "datasets": [first, second], "jobs": [job_id]},
        },
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    board = response.json()
    storage = board["storage_path"]
    assert board["url"] == f"/instances/{board['id']}/" and board["cpu"] == 0.5 and board["memory_gb"] == 1
    assert [(m["kind"], m["path"]) for m in board["mounts"]] == [
        ("model", f"{storage}/models/{TINY.id}"),
        ("dataset", f"{storage}/datasets/train.jsonl"),
        (
            "dataset",
            f"{storage}/datasets/{second}-train.jsonl",
        ),  # the same name twice: the id tells them apart
        ("job", board["mounts"][3]["path"]),
    ]
    assert board["mounts"][3]["path"].endswith(f"/{job_id}")
    running = await wait_status(lab, token, f"/api/v1/instances/{board['id']}", "running")
    assert running["node_id"] == "node-a" and running["started_at"]
    copied = Path(board["mounts"][0]["path"]) / "config.json"
    assert await asyncio.to_thread(copied.is_file)
    assert not (await asyncio.to_thread(os.stat, copied)).st_mode & 0o222

    runs = await lab.http.get(f"/instances/{board['id']}/data/runs", headers=bearer(token))
    assert runs.status_code == 200 and runs.json() == [], runs.text
    listed = await lab.http.get("/api/v1/instances", headers=bearer(token))
    assert [i["id"] for i in listed.json()["data"]] == [board["id"]]

    clash = await lab.http.post(
        "/api/v1/instances",
        json={"name": "board", "kind": "tensorboard", "mounts": {"jobs": [job_id]}},
        headers=bearer(token),
    )
    assert clash.status_code == 409 and clash.json()["error"]["param"] == "name"
    other = await lab.sign_in("bob@example.com")
    assert (await lab.http.get(f"/api/v1/instances/{board['id']}", headers=bearer(other))).status_code == 404
    assert (
        await lab.http.get(f"/instances/{board['id']}/data/runs", headers=bearer(other))
    ).status_code == 404
    theirs = await lab.http.post(
        "/api/v1/instances",
        json={"name": "mine", "kind": "jupyterlab", "mounts": {"datasets": [first]}},
        headers=bearer(other),
    )
    assert theirs.status_code == 400 and theirs.json()["error"]["code"] == "file_not_found"

    stopped = await lab.http.post(f"/api/v1/instances/{board['id']}/stop", headers=bearer(token))
    assert stopped.status_code == 200 and stopped.json()["status"] in ("stopping", "stopped")
    closed = await lab.http.get(f"/instances/{board['id']}/data/runs", headers=bearer(token))
    assert closed.status_code == 409
    deleted = await lab.http.delete(f"/api/v1/instances/{board['id']}", headers=bearer(token))
    assert deleted.status_code == 200
    assert (await lab.http.get(f"/api/v1/instances/{board['id']}", headers=bearer(token))).status_code == 404


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"kind": "jupyterlab", "mounts": {"models": ["no-such-model"]}}, "mounts.models", "model_not_found"),
        ({"kind": "jupyterlab", "mounts": {"adapters": [TINY.id]}}, "mounts.adapters", None),
        ({"kind": "jupyterlab", "cpu": 100}, "cpu", None),
        ({"kind": "jupyterlab", "gpus": 3}, "gpus", None),
        ({"kind": "jupyterlab", "mounts": {"jobs": ["job_1"]}}, "mounts.jobs", None),
        ({"kind": "jupyterlab", "mounts": {"models": [TINY.id, TINY.id]}}, "mounts.models", None),
        ({"kind": "jupyterlab", "ports": [8888]}, "ports", "unknown_parameter"),
        ({"kind": "vscode"}, "kind", "invalid_value"),
    ],
)
async def test_bad_requests_are_refused_with_the_parameter(
    lab: Gateway, body: dict[str, Any], param: str, code: str | None
) -> None:
    token = await lab.sign_in()
    response = await lab.http.post("/api/v1/instances", json={"name": "bad", **body}, headers=bearer(token))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and (code is None or error["code"] == code), error
