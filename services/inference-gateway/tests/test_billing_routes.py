"""/api/v1/balance, /api/v1/prices and the admin routes that add credit and set prices; GPU types
in prices are checked against the real scheduler's inventory (a trainer agent with "cpu" slots)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from auth_contract_double import UsageRecord

if TYPE_CHECKING:
    from conftest import Gateway


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def credit(gateway: Gateway, token: str, user_id: str, body: Any) -> Any:
    return await gateway.http.post(f"/api/v1/admin/users/{user_id}/credits", json=body, headers=bearer(token))


async def set_prices(gateway: Gateway, token: str, prices: Any) -> Any:
    return await gateway.http.put("/api/v1/admin/prices", json={"prices": prices}, headers=bearer(token))


# -- balance and credits --


async def test_a_new_users_balance_is_zero(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    response = await gateway.http.get("/api/v1/balance", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "object": "balance",
        "user_id": gateway.user_id(),
        "credits": 0.0,
        "charges": 0.0,
        "balance": 0.0,
        "currency": "USD",
    }


async def test_credits_less_charges_is_the_balance(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    ada = gateway.user_id()
    gateway.auth.servicer.usage.append(
        UsageRecord(user_id=ada, at=datetime(2026, 11, 2, tzinfo=UTC), cost_micros=1_234_567)
    )
    admin = await gateway.sign_in_admin()
    given = await credit(gateway, admin, ada, {"amount": 25.5, "note": " welcome "})
    assert given.status_code == 200, given.text
    assert given.json()["credits"] == 25.5 and given.json()["user_id"] == ada
    assert gateway.auth.servicer.last_credit_note == "welcome"
    again = await credit(gateway, admin, ada, {"amount": 10})  # a whole number is a number too
    assert again.json()["credits"] == 35.5

    mine = (await gateway.http.get("/api/v1/balance", headers=bearer(token))).json()
    assert (mine["credits"], mine["charges"], mine["balance"]) == (35.5, 1.234567, 34.265433)
    # An admin sees the same; the user cannot look at anyone's this way, not even their own.
    seen = await gateway.http.get(f"/api/v1/admin/users/{ada}/balance", headers=bearer(admin))
    assert seen.status_code == 200 and seen.json() == mine, seen.text
    refused = await gateway.http.get(f"/api/v1/admin/users/{ada}/balance", headers=bearer(token))
    assert refused.status_code == 403, refused.text


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 0},
        {"amount": -5},
        {"amount": "10"},
        {"amount": "ten"},
        {"amount": True},
        {"amount": None},
        {"amount": 1e-9},  # less than a millionth
        {"amount": 2e9},  # beyond any real credit
        {},
    ],
)
async def test_a_credit_that_is_not_a_positive_number_is_400_amount(gateway: Gateway, body: Any) -> None:
    await gateway.sign_in()
    admin = await gateway.sign_in_admin()
    response = await credit(gateway, admin, gateway.user_id(), body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "amount"
    assert gateway.auth.servicer.calls["AddCredit"] == 0


async def test_credit_for_an_unknown_user_is_404(gateway: Gateway) -> None:
    admin = await gateway.sign_in_admin()
    response = await credit(gateway, admin, "user_nobody", {"amount": 5})
    assert response.status_code == 404 and response.json()["error"]["param"] == "user_id"


async def test_only_an_admin_gives_credit(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    response = await credit(gateway, token, gateway.user_id(), {"amount": 1000})
    assert response.status_code == 403 and response.json()["error"]["code"] == "admin_required"
    assert gateway.auth.servicer.credits[gateway.user_id()] == 0


async def test_unknown_fields_of_a_credit_are_refused(gateway: Gateway) -> None:
    admin = await gateway.sign_in_admin()
    response = await credit(
        gateway, admin, gateway.user_id("root@example.com"), {"amount": 1, "currency": "EUR"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_parameter"


async def test_balance_needs_a_credential(gateway: Gateway) -> None:
    assert (await gateway.http.get("/api/v1/balance")).status_code == 401


# -- prices --


async def test_an_admin_sets_prices_and_everyone_reads_them(cluster: Gateway) -> None:
    user = await cluster.sign_in()
    assert (await cluster.http.get("/api/v1/prices", headers=bearer(user))).json() == {
        "object": "list",
        "currency": "USD",
        "data": [],
    }
    admin = await cluster.sign_in_admin()
    response = await set_prices(
        cluster,
        admin,
        [
            {"kind": "gpu_hour", "name": "cpu", "price": 0.25},
            {"kind": "gpu_hour", "name": "*", "price": 2},
            {"kind": "input_tokens", "name": "*", "price": 0.15},
            {"kind": "output_tokens", "name": "smollm2", "price": 0},
        ],
    )
    assert response.status_code == 200, response.text
    assert cluster.auth.servicer.prices[("input_tokens", "*")] == 150_000  # micros per million tokens
    listed = (await cluster.http.get("/api/v1/prices", headers=bearer(user))).json()
    assert listed["data"] == [
        {"kind": "gpu_hour", "name": "*", "price": 2.0},
        {"kind": "gpu_hour", "name": "cpu", "price": 0.25},
        {"kind": "input_tokens", "name": "*", "price": 0.15},
        {"kind": "output_tokens", "name": "smollm2", "price": 0.0},
    ]
    assert response.json() == listed


async def test_a_price_for_a_gpu_type_the_cluster_lacks_is_400(cluster: Gateway) -> None:
    admin = await cluster.sign_in_admin()
    response = await set_prices(
        cluster,
        admin,
        [
            {"kind": "gpu_hour", "name": "cpu", "price": 1},
            {"kind": "gpu_hour", "name": "A100-80G", "price": 3},
        ],
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("name", "unknown_gpu_type")
    assert "A100-80G" in error["message"] and "cpu" in error["message"]
    assert cluster.auth.servicer.prices == {}  # nothing of the request was applied


async def test_a_model_price_is_not_checked_against_the_gpus(cluster: Gateway) -> None:
    admin = await cluster.sign_in_admin()
    response = await set_prices(cluster, admin, [{"kind": "input_tokens", "name": "A100-80G", "price": 1}])
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("prices", "param"),
    [
        ([{"kind": "input_tokens", "name": "*", "price": -0.5}], "prices.0.price"),
        ([{"kind": "gpu_hour", "name": "*", "price": "1"}], "prices.0.price"),
        ([{"kind": "gpu_hour", "name": "*", "price": 2e6}], "prices.0.price"),  # costs would overflow
        ([{"kind": "per_request", "name": "*", "price": 1}], "prices.0.kind"),
        ([{"kind": "input_tokens", "name": "", "price": 1}], "prices.0.name"),
        ([{"kind": "input_tokens", "price": 1}], "prices.0.name"),
        ([], "prices"),
    ],
)
async def test_bad_prices_are_400(cluster: Gateway, prices: Any, param: str) -> None:
    admin = await cluster.sign_in_admin()
    response = await set_prices(cluster, admin, prices)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert cluster.auth.servicer.calls["SetPrices"] == 0


async def test_only_an_admin_sets_prices(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    response = await set_prices(gateway, token, [{"kind": "gpu_hour", "name": "*", "price": 0}])
    assert response.status_code == 403 and response.json()["error"]["code"] == "admin_required"


async def test_without_a_scheduler_a_gpu_price_cannot_be_checked(gateway: Gateway) -> None:
    admin = await gateway.sign_in_admin()
    named = await set_prices(gateway, admin, [{"kind": "gpu_hour", "name": "cpu", "price": 1}])
    assert named.status_code == 503
    every = await set_prices(gateway, admin, [{"kind": "gpu_hour", "name": "*", "price": 1}])
    assert every.status_code == 200  # "*" needs no inventory


async def test_a_user_is_refused_before_the_body_is_looked_at(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    assert (await set_prices(gateway, token, [])).status_code == 403
    assert (await credit(gateway, token, gateway.user_id(), {"amount": -1})).status_code == 403
