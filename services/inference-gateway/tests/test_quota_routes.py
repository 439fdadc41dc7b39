"""/api/v1/quotas and /api/v1/admin/users/{user_id}/quotas/{resource}: what is in use from auth and
the real catalog (stored bytes), GPU types checked against the real scheduler's inventory."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from suanli_catalog.main import RunningCatalog

if TYPE_CHECKING:
    from conftest import Gateway

DATASET = b'{"messages": [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"}]}\n'


@pytest.fixture
def catalog_address(catalog: RunningCatalog) -> str:
    return catalog.address


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def put_quota(gateway: Gateway, token: str, user_id: str, resource: str, body: Any) -> Any:
    return await gateway.http.put(
        f"/api/v1/admin/users/{user_id}/quotas/{resource}", json=body, headers=bearer(token)
    )


async def test_without_quotas_the_list_is_empty(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    response = await gateway.http.get("/api/v1/quotas", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json() == {"object": "list", "data": []}


async def test_quotas_show_what_is_in_use(cluster: Gateway) -> None:
    token = await cluster.sign_in()
    ada = cluster.user_id()
    uploaded = await cluster.http.post(
        "/v1/files",
        files={"file": ("train.jsonl", io.BytesIO(DATASET * 10), "application/jsonl")},
        data={"purpose": "fine-tune"},
        headers=bearer(token),
    )
    assert uploaded.status_code == 200, uploaded.text
    cluster.auth.servicer.tokens_today[ada] = 1234
    admin = await cluster.sign_in_admin()
    for resource, limit in (("tokens_per_day", 100_000), ("storage_bytes", 10**9), ("gpu:cpu", 1)):
        response = await put_quota(cluster, admin, ada, resource, {"limit": limit})
        assert response.status_code == 200, response.text
        assert response.json() == {"object": "quota", "user_id": ada, "resource": resource, "limit": limit}

    listed = (await cluster.http.get("/api/v1/quotas", headers=bearer(token))).json()
    by_resource = {q["resource"]: q for q in listed["data"]}
    midnight = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), UTC)
    assert by_resource["tokens_per_day"] == {
        "object": "quota",
        "resource": "tokens_per_day",
        "limit": 100_000,
        "used": 1234,
        "resets_at": int(midnight.timestamp()),
    }
    assert by_resource["storage_bytes"]["used"] == len(DATASET) * 10  # from the catalog
    assert by_resource["gpu:cpu"] == {
        "object": "quota",
        "resource": "gpu:cpu",
        "limit": 1,
        "used": 0,
        "resets_at": None,
    }
    # Another user has none of them.
    other = await cluster.sign_in("eve@example.com")
    assert (await cluster.http.get("/api/v1/quotas", headers=bearer(other))).json()["data"] == []


async def test_an_upload_over_the_storage_quota_is_refused_and_nothing_is_stored(cluster: Gateway) -> None:
    token = await cluster.sign_in()
    ada = cluster.user_id()

    async def upload(copies: int) -> Any:
        return await cluster.http.post(
            "/v1/files",
            files={"file": ("train.jsonl", io.BytesIO(DATASET * copies), "application/jsonl")},
            data={"purpose": "fine-tune"},
            headers=bearer(token),
        )

    admin = await cluster.sign_in_admin()
    assert (
        await put_quota(cluster, admin, ada, "storage_bytes", {"limit": len(DATASET) * 15})
    ).status_code == 200
    assert (await upload(10)).status_code == 200
    refused = await upload(10)  # 20 lines' worth would be stored
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "insufficient_quota",
        "quota_exceeded",
        "storage_bytes",
    )
    assert f"{len(DATASET) * 10} of {len(DATASET) * 15} bytes stored" in error["message"]
    listed = (await cluster.http.get("/v1/files", headers=bearer(token))).json()["data"]
    assert len(listed) == 1
    assert (await upload(5)).status_code == 200  # exactly up to the quota still fits


async def test_a_limit_below_current_use_is_allowed(gateway: Gateway) -> None:
    await gateway.sign_in()
    gateway.auth.servicer.tokens_today[gateway.user_id()] = 500
    admin = await gateway.sign_in_admin()
    response = await put_quota(gateway, admin, gateway.user_id(), "tokens_per_day", {"limit": 100})
    assert response.status_code == 200 and response.json()["limit"] == 100


async def test_gpu_star_needs_no_inventory(gateway: Gateway) -> None:
    await gateway.sign_in()
    admin = await gateway.sign_in_admin()
    response = await put_quota(gateway, admin, gateway.user_id(), "gpu:*", {"limit": 4})
    assert response.status_code == 200 and response.json()["resource"] == "gpu:*"


async def test_a_gpu_type_the_cluster_lacks_is_400(cluster: Gateway) -> None:
    await cluster.sign_in()
    admin = await cluster.sign_in_admin()
    response = await put_quota(cluster, admin, cluster.user_id(), "gpu:A100-80G", {"limit": 2})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("resource", "unknown_gpu_type")
    assert cluster.auth.servicer.calls["SetQuota"] == 0


@pytest.mark.parametrize(
    ("resource", "body", "param"),
    [
        ("tokens_per_day", {"limit": -1}, "limit"),
        ("tokens_per_day", {"limit": "5"}, "limit"),
        ("tokens_per_day", {"limit": 1.5}, "limit"),
        ("tokens_per_day", {"limit": 2**63}, "limit"),
        ("tokens_per_day", {}, "limit"),
        ("tokens_per_day", {"limit": 5, "burst": 2}, "burst"),
        ("requests_per_day", {"limit": 5}, "resource"),  # auth's refusal, passed on
    ],
)
async def test_bad_quotas_are_400(gateway: Gateway, resource: str, body: Any, param: str) -> None:
    await gateway.sign_in()
    admin = await gateway.sign_in_admin()
    response = await put_quota(gateway, admin, gateway.user_id(), resource, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


async def test_a_quota_for_an_unknown_user_is_404(gateway: Gateway) -> None:
    admin = await gateway.sign_in_admin()
    response = await put_quota(gateway, admin, "user_nobody", "tokens_per_day", {"limit": 5})
    assert response.status_code == 404 and response.json()["error"]["param"] == "user_id"


async def test_only_an_admin_sets_quotas(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    response = await put_quota(gateway, token, gateway.user_id(), "tokens_per_day", {"limit": 10**12})
    assert response.status_code == 403
    assert response.json()["error"] == {
        "message": "only an admin can use this route",
        "type": "permission_error",
        "param": None,
        "code": "admin_required",
    }
    assert gateway.auth.servicer.quotas == {}


async def test_quotas_need_a_credential(gateway: Gateway) -> None:
    assert (await gateway.http.get("/api/v1/quotas")).status_code == 401
