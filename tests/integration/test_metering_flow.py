"""Metering across the real platform (launcher, nats-server, auth, scheduler, one trainer agent with
two CPU slots, gateway): an admin sets prices, credits a user and sets quotas; the user's job is
metered in GPU-seconds within a tolerance of what it ran, token usage is counted exactly and once
even when its event is delivered twice, the scheduler refuses work over a GPU quota and the gateway
answers 429 over a token quota. Chat traffic on a real deployment and a fine-tune are metered in
test_inference_flow and test_finetune_flow, where they run anyway."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import nats
import pytest

from suanli_common.bus import encode_event, event_subject
from suanli_common.proto.suanli.v1.events_pb2 import UsageRecorded

if TYPE_CHECKING:
    from conftest import Platform

pytestmark = pytest.mark.integration

ADMIN_EMAIL = "admin-metering@example.com"
PASSWORD = "correct-horse-1"
CPU_HOUR_PRICE = 3.6  # 0.001 per slot-second: costs are easy to check


@pytest.fixture(scope="module")
def platform_env() -> dict[str, str]:
    return {"SUANLI_ADMIN_EMAILS": ADMIN_EMAIL}


@contextlib.contextmanager
def signed_in(platform: Platform, email: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        yield _sign_up(client, email)


def _sign_up(client: httpx.Client, email: str) -> httpx.Client:
    created = client.post("/api/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    return client


@pytest.fixture(scope="module")
def admin(platform: Platform) -> Iterator[httpx.Client]:
    with signed_in(platform, ADMIN_EMAIL) as client:
        yield client


@pytest.fixture(scope="module")
def user(platform: Platform) -> Iterator[httpx.Client]:
    with signed_in(platform, f"metered-{uuid.uuid4().hex[:8]}@example.com") as client:
        yield client


def user_id(client: httpx.Client) -> str:
    me = client.get("/api/v1/auth/me")
    assert me.status_code == 200, me.text
    return str(me.json()["user_id"])


def window() -> dict[str, str]:
    now = datetime.now(UTC)
    return {"from": (now - timedelta(days=1)).isoformat(), "to": (now + timedelta(days=1)).isoformat()}


def eventually(check: Callable[[], Any], timeout: float = 30) -> Any:
    """Metering follows events: poll until `check` returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def settled(read: Callable[[], float], timeout: float = 30) -> float:
    """Poll until two reads half a second apart agree: an interval the metering has not yet seen
    end counts up to now, so it grows until the job's end event arrives."""
    deadline = time.monotonic() + timeout
    last = read()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        current = read()
        if current and current == last:
            return current
        last = current
    return last


def test_admin_sets_prices_and_credits_and_bad_values_are_refused(
    admin: httpx.Client, user: httpx.Client
) -> None:
    prices = admin.put(
        "/api/v1/admin/prices",
        json={
            "prices": [
                {"kind": "gpu_hour", "name": "cpu", "price": CPU_HOUR_PRICE},
                {"kind": "input_tokens", "name": "*", "price": 1.0},
                {"kind": "output_tokens", "name": "*", "price": 2.0},
            ]
        },
    )
    assert prices.status_code == 200, prices.text
    listed = {(p["kind"], p["name"]): p["price"] for p in user.get("/api/v1/prices").json()["data"]}
    assert listed[("gpu_hour", "cpu")] == CPU_HOUR_PRICE and listed[("output_tokens", "*")] == 2.0

    unknown = admin.put(
        "/api/v1/admin/prices", json={"prices": [{"kind": "gpu_hour", "name": "H100", "price": 2}]}
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_gpu_type", unknown.text
    negative = admin.put(
        "/api/v1/admin/prices", json={"prices": [{"kind": "gpu_hour", "name": "cpu", "price": -1}]}
    )
    assert negative.status_code == 400, negative.text
    assert user.put("/api/v1/admin/prices", json={"prices": []}).status_code == 403

    uid = user_id(user)
    for amount in (-5, 0):
        refused = admin.post(f"/api/v1/admin/users/{uid}/credits", json={"amount": amount})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "amount", refused.text
    assert user.post(f"/api/v1/admin/users/{uid}/credits", json={"amount": 10}).status_code == 403
    for _ in range(2):  # a retry with the same Idempotency-Key gives nothing twice
        credited = admin.post(
            f"/api/v1/admin/users/{uid}/credits",
            json={"amount": 10, "note": "welcome"},
            headers={"Idempotency-Key": "welcome-credit"},
        )
        assert credited.status_code == 200 and credited.json()["credits"] == 10, credited.text
    balance = user.get("/api/v1/balance").json()
    assert (balance["credits"], balance["balance"]) == (10, 10)


def _gpu_seconds(client: httpx.Client) -> float:
    usage = client.get("/api/v1/usage", params={**window(), "group_by": "gpu_type"})
    assert usage.status_code == 200, usage.text
    return sum(line["gpu_seconds"] for line in usage.json()["data"] if line["group"] == "cpu")


def test_a_job_is_metered_by_the_slot_seconds_it_ran(user: httpx.Client, admin: httpx.Client) -> None:
    submitted = user.post(
        "/api/v1/jobs",
        json={"name": "metered", "command": "sleep 3", "job_type": "pytorch", "nodes": 1, "gpus_per_node": 2},
    )
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    job = eventually(
        lambda: (j := user.get(f"/api/v1/jobs/{job_id}").json())["status"] == "succeeded" and j, timeout=60
    )
    assert job, "the job did not succeed"
    ran = job["finished_at"] - job["started_at"]  # whole seconds, each truncated

    metered = settled(lambda: _gpu_seconds(user))
    # Two slots for the time between the running and the succeeded facts; the job's own
    # timestamps come from the same scheduler, but in whole seconds. (The scheduler hears of the
    # start from the agent's report, so on a loaded machine it sees less than the whole `sleep 3`.)
    assert metered == pytest.approx(2 * ran, abs=2 * 1.1), (metered, ran)
    assert 0 < metered < 2 * 6
    balance = user.get("/api/v1/balance").json()
    assert balance["charges"] == pytest.approx(metered * CPU_HOUR_PRICE / 3600, abs=1e-5)
    assert balance["balance"] == pytest.approx(10 - balance["charges"], abs=1e-6)

    # The ledger is the user's own: another user sees nothing, an admin sees it by user.
    stranger = admin.get("/api/v1/admin/usage", params={**window(), "group_by": "user"})
    assert stranger.status_code == 200, stranger.text
    by_user = {line["group"]: line for line in stranger.json()["data"]}
    assert by_user[user_id(user)]["gpu_seconds"] == pytest.approx(metered)


def _tokens(client: httpx.Client) -> tuple[int, int, int]:
    usage = client.get("/api/v1/usage", params={**window(), "group_by": "model"})
    assert usage.status_code == 200, usage.text
    total = usage.json()["total"]
    return total["requests"], total["input_tokens"], total["output_tokens"]


async def _publish(platform: Platform, body: bytes) -> None:
    connection = await nats.connect(f"nats://127.0.0.1:{platform.nats_port}")
    try:
        # A fresh Nats-Msg-Id: JetStream stores it as a new message, so the consumer sees the
        # same event a second time, as after a redelivery.
        await connection.jetstream().publish(
            event_subject("usage.recorded"), body, headers={"Nats-Msg-Id": uuid.uuid4().hex}
        )
    finally:
        await connection.close()


def test_tokens_are_counted_once_and_a_token_quota_stops_requests_at_the_gateway(
    platform: Platform, user: httpx.Client, admin: httpx.Client
) -> None:
    uid = user_id(user)
    # What the gateway publishes for an answered request (this platform serves no model).
    envelope = encode_event(
        "usage.recorded",
        uid,
        UsageRecorded(
            request_id=f"req-{uuid.uuid4().hex}",
            user_id=uid,
            model="smollm2-135m-instruct",
            endpoint="chat.completions",
            prompt_tokens=120,
            completion_tokens=30,
            status_code=200,
        ),
        source="inference-gateway",
    ).SerializeToString()
    asyncio.run(_publish(platform, envelope))
    assert eventually(lambda: _tokens(user) == (1, 120, 30)), _tokens(user)
    asyncio.run(_publish(platform, envelope))
    time.sleep(2)  # the consumer has long handled the copy by now
    assert _tokens(user) == (1, 120, 30)
    by_model = user.get("/api/v1/usage", params={**window(), "group_by": "model"}).json()["data"]
    line = next(line for line in by_model if line["group"] == "smollm2-135m-instruct")
    assert line["cost"] == pytest.approx((120 * 1.0 + 30 * 2.0) / 1e6)

    quota = admin.put(f"/api/v1/admin/users/{uid}/quotas/tokens_per_day", json={"limit": 150})
    assert quota.status_code == 200, quota.text
    mine = {q["resource"]: q for q in user.get("/api/v1/quotas").json()["data"]}
    assert (mine["tokens_per_day"]["limit"], mine["tokens_per_day"]["used"]) == (150, 150)

    def refused() -> httpx.Response | None:
        answer = user.post(
            "/v1/chat/completions",
            json={"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}]},
        )
        return answer if answer.status_code == 429 else None

    answer = eventually(refused, timeout=15)
    assert answer is not None, "the gateway never applied the token quota"
    error = answer.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "insufficient_quota",
        "quota_exceeded",
        "tokens_per_day",
    )
    assert "150 of 150" in error["message"]
    assert 0 < int(answer.headers["Retry-After"]) <= 24 * 3600


def test_a_gpu_quota_is_enforced_by_the_scheduler(user: httpx.Client, admin: httpx.Client) -> None:
    uid = user_id(user)
    unknown = admin.put(f"/api/v1/admin/users/{uid}/quotas/gpu:H100", json={"limit": 1})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_gpu_type", unknown.text
    assert admin.put(f"/api/v1/admin/users/{uid}/quotas/gpu:cpu", json={"limit": -1}).status_code == 400
    assert user.put(f"/api/v1/admin/users/{uid}/quotas/gpu:cpu", json={"limit": 8}).status_code == 403
    assert admin.put(f"/api/v1/admin/users/{uid}/quotas/gpu:cpu", json={"limit": 1}).status_code == 200

    def refused() -> dict[str, Any] | None:
        answer = user.post(
            "/api/v1/jobs",
            json={"name": "big", "command": "true", "job_type": "pytorch", "nodes": 1, "gpus_per_node": 2},
        )
        if answer.status_code == 201:  # the quota has not reached the scheduler yet
            user.post(f"/api/v1/jobs/{answer.json()['id']}/cancel")
            return None
        assert answer.status_code == 400, answer.text
        return dict(answer.json()["error"])

    error = eventually(refused, timeout=15)
    assert error is not None, "the scheduler never applied the GPU quota"
    assert "quota" in error["message"]


def test_usage_export_and_bad_ranges(user: httpx.Client, admin: httpx.Client) -> None:
    exported = user.get("/api/v1/usage", params={**window(), "group_by": "day", "format": "csv"})
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    today = datetime.now(UTC).date().isoformat()
    assert [r["group"] for r in rows] == [today], rows
    assert float(rows[0]["gpu_seconds"]) > 0 and int(rows[0]["input_tokens"]) == 120

    now = datetime.now(UTC)
    bad = [
        ({"from": now.isoformat()}, "to"),  # unbounded
        ({"from": now.isoformat(), "to": (now - timedelta(days=1)).isoformat()}, "to"),  # reversed
        ({"from": (now - timedelta(days=800)).isoformat(), "to": now.isoformat()}, "to"),  # too long
        ({**window(), "group_by": "colour"}, "group_by"),
        ({"from": "yesterday", "to": now.isoformat()}, "from"),
    ]
    for params, param in bad:
        answer = user.get("/api/v1/usage", params=params)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param, (params, answer.text)
    assert user.get("/api/v1/admin/usage", params=window()).status_code == 403
