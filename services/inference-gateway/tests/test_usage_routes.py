"""/api/v1/usage and /api/v1/admin/usage: the period checked at the edge, auth's ledger lines as
JSON or CSV, the API keys' names, and the bytes stored from the real catalog."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from auth_contract_double import UsageRecord

from suanli_catalog.main import RunningCatalog
from suanli_common.grpc import make_channel
from suanli_common.proto.suanli.v1 import catalog_pb2_grpc
from suanli_common.testing import free_port
from suanli_inference_gateway.clients.catalog import CATALOG_SERVICE, IDEMPOTENT_METHODS, CatalogClient

if TYPE_CHECKING:
    from conftest import Gateway

NOVEMBER = {"from": "2026-11-01", "to": "2026-11-30"}
DATASET = b'{"messages": [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"}]}\n'


@pytest.fixture
def catalog_address(catalog: RunningCatalog) -> str:
    return catalog.address


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def record(gateway: Gateway, user_id: str, **fields: Any) -> None:
    gateway.auth.servicer.usage.append(UsageRecord(user_id=user_id, **fields))


async def usage(gateway: Gateway, token: str, path: str = "/api/v1/usage", **params: str) -> Any:
    return await gateway.http.get(path, params=params, headers=bearer(token))


async def test_own_usage_by_day_with_costs_in_currency_units(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    me = gateway.user_id()
    record(
        gateway, me, at=at(2), model="smollm2", requests=3, input_tokens=30, output_tokens=12, cost_micros=42
    )
    record(gateway, me, at=at(2, 20), gpu_type="cpu", gpu_seconds=5400.0, cost_micros=1_234_567)
    record(gateway, me, at=at(30, 23), model="smollm2", requests=1, input_tokens=5, output_tokens=1)
    record(gateway, me, at=datetime(2026, 12, 1, tzinfo=UTC), requests=9)  # after the period
    await gateway.sign_in("eve@example.com")
    record(gateway, gateway.user_id("eve@example.com"), at=at(2), requests=100, cost_micros=10**9)

    response = await usage(gateway, token, **NOVEMBER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in ("object", "from", "to", "group_by", "currency")} == {
        "object": "usage",
        "from": "2026-11-01T00:00:00Z",
        "to": "2026-12-01T00:00:00Z",  # a date as `to` counts whole
        "group_by": "day",
        "currency": "USD",
    }
    assert body["data"] == [
        {
            "group": "2026-11-02",
            "key_name": None,
            "gpu_seconds": 5400.0,
            "gpu_hours": 1.5,
            "requests": 3,
            "input_tokens": 30,
            "output_tokens": 12,
            "cost": 1.234609,
        },
        {
            "group": "2026-11-30",
            "key_name": None,
            "gpu_seconds": 0.0,
            "gpu_hours": 0.0,
            "requests": 1,
            "input_tokens": 5,
            "output_tokens": 1,
            "cost": 0.0,
        },
    ]
    assert body["total"] == {
        "gpu_seconds": 5400.0,
        "gpu_hours": 1.5,
        "requests": 4,
        "input_tokens": 35,
        "output_tokens": 13,
        "cost": 1.234609,
    }
    assert body["storage_bytes"] == 0


async def test_storage_bytes_are_the_callers_files_in_the_catalog(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    uploaded = await gateway.http.post(
        "/v1/files",
        files={"file": ("train.jsonl", io.BytesIO(DATASET * 20), "application/jsonl")},
        data={"purpose": "fine-tune"},
        headers=bearer(token),
    )
    assert uploaded.status_code == 200, uploaded.text
    assert (await usage(gateway, token, **NOVEMBER)).json()["storage_bytes"] == len(DATASET) * 20
    # Another user stores nothing; the public seed model is not theirs either.
    other = await gateway.sign_in("eve@example.com")
    assert (await usage(gateway, other, **NOVEMBER)).json()["storage_bytes"] == 0


async def test_a_catalog_that_cannot_answer_leaves_storage_unknown(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    channel = make_channel(
        f"127.0.0.1:{free_port()}",
        timeout=1.0,
        service=CATALOG_SERVICE,
        idempotent_methods=IDEMPOTENT_METHODS,
    )
    gateway.deps.catalog = CatalogClient(catalog_pb2_grpc.CatalogServiceStub(channel))
    try:
        response = await usage(gateway, token, **NOVEMBER)
    finally:
        await channel.close()
    assert response.status_code == 200 and response.json()["storage_bytes"] is None


@pytest.mark.parametrize(
    ("group_by", "groups"),
    [("model", ["", "smollm2", "tiny"]), ("gpu_type", ["", "cpu"])],
)
async def test_grouping_by_model_and_gpu_type(gateway: Gateway, group_by: str, groups: list[str]) -> None:
    token = await gateway.sign_in()
    me = gateway.user_id()
    record(gateway, me, at=at(3), model="smollm2", requests=1)
    record(gateway, me, at=at(4), model="tiny", requests=2)
    record(gateway, me, at=at(5), gpu_type="cpu", gpu_seconds=60.0)
    body = (await usage(gateway, token, group_by=group_by, **NOVEMBER)).json()
    assert body["group_by"] == group_by
    assert [line["group"] for line in body["data"]] == groups
    assert body["total"]["requests"] == 3 and body["total"]["gpu_seconds"] == 60.0


async def test_grouping_by_key_names_the_keys(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    key = await gateway.new_api_key(token, name="laptop")
    me = gateway.user_id()
    record(gateway, me, at=at(3), key_id=key["id"], requests=2)
    record(gateway, me, at=at(3), gpu_type="cpu", gpu_seconds=10.0)  # GPU time has no key
    body = (await usage(gateway, token, group_by="key", **NOVEMBER)).json()
    assert [(line["group"], line["key_name"]) for line in body["data"]] == [("", None), (key["id"], "laptop")]


async def test_csv_is_a_file_with_the_documented_columns(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    me = gateway.user_id()
    record(gateway, me, at=at(3), model="smollm2", requests=2, input_tokens=7, output_tokens=3, cost_micros=5)
    record(gateway, me, at=at(4), model="=HYPERLINK(1)", requests=1)  # a user-chosen name
    response = await usage(gateway, token, group_by="model", format="csv", **NOVEMBER)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert (
        response.headers["content-disposition"]
        == 'attachment; filename="suanli-usage-2026-11-01-2026-11-30.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows == [
        ["group", "gpu_seconds", "requests", "input_tokens", "output_tokens", "cost", "currency"],
        ["'=HYPERLINK(1)", "0.0", "1", "0", "0", "0.000000", "USD"],  # never a formula
        ["smollm2", "0.0", "2", "7", "3", "0.000005", "USD"],
    ]


async def test_datetimes_are_utc_when_no_zone_is_given_and_converted_otherwise(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    me = gateway.user_id()
    record(gateway, me, at=at(1, 9), requests=1)  # before the start
    record(gateway, me, at=at(1, 11), requests=2)
    record(gateway, me, at=at(2, 8), requests=4)  # at the end: exclusive
    params = {"from": "2026-11-01T12:00:00+02:00", "to": "2026-11-02T08:00:00"}
    body = (await usage(gateway, token, **params)).json()
    assert (body["from"], body["to"]) == ("2026-11-01T10:00:00Z", "2026-11-02T08:00:00Z")
    assert body["total"]["requests"] == 2
    csv_response = await usage(gateway, token, format="csv", **params)
    assert (
        'filename="suanli-usage-2026-11-01T100000Z-2026-11-02T080000Z.csv"'
        in (csv_response.headers["content-disposition"])
    )


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"to": "2026-11-30"}, "from", "missing_required_parameter"),
        ({"from": "2026-11-01"}, "to", "missing_required_parameter"),
        ({"from": "", "to": "2026-11-30"}, "from", "missing_required_parameter"),
        ({"from": "yesterday", "to": "2026-11-30"}, "from", "invalid_value"),
        ({"from": "2026-11-01", "to": "2026-13-01"}, "to", "invalid_value"),
        ({"from": "2026-11-01", "to": "9999-12-31"}, "to", "invalid_value"),  # its end overflows
        ({"from": "2026-11-01", "to": "2031-01-01"}, "to", "period_too_long"),
        ({"from": "2026-11-30", "to": "2026-11-01"}, "to", "invalid_period"),
        ({"from": "2026-11-01T10:00:00Z", "to": "2026-11-01T10:00:00Z"}, "to", "invalid_period"),
        ({"from": "2026-01-01", "to": "2027-01-02"}, "to", "period_too_long"),
        ({**NOVEMBER, "group_by": "week"}, "group_by", "invalid_value"),
        ({**NOVEMBER, "group_by": "user"}, "group_by", "invalid_value"),  # admins only
        ({**NOVEMBER, "format": "xml"}, "format", "invalid_value"),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    gateway: Gateway, params: dict[str, str], param: str, code: str
) -> None:
    token = await gateway.sign_in()
    response = await usage(gateway, token, **params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert gateway.auth.servicer.calls["GetUsage"] == 0  # refused at the edge


async def test_a_whole_leap_year_is_allowed(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    response = await usage(gateway, token, **{"from": "2028-01-01", "to": "2028-12-31"})
    assert response.status_code == 200, response.text  # 366 days


async def test_another_users_usage_cannot_be_reached_from_the_users_route(gateway: Gateway) -> None:
    await gateway.sign_in("eve@example.com")
    eve = gateway.user_id("eve@example.com")
    record(gateway, eve, at=at(3), requests=7)
    token = await gateway.sign_in()
    body = (await usage(gateway, token, user_id=eve, **NOVEMBER)).json()  # user_id means nothing here
    assert body["data"] == [] and body["total"]["requests"] == 0


async def test_usage_needs_a_credential(gateway: Gateway) -> None:
    response = await gateway.http.get("/api/v1/usage", params=NOVEMBER)
    assert response.status_code == 401


# -- admins --


async def test_the_admin_route_is_403_for_a_user(gateway: Gateway) -> None:
    token = await gateway.sign_in()
    response = await usage(gateway, token, "/api/v1/admin/usage", **NOVEMBER)
    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", "admin_required")
    assert gateway.auth.servicer.calls["GetUsage"] == 0


async def test_an_admin_sees_every_user_or_one(gateway: Gateway) -> None:
    user_token = await gateway.sign_in()
    ada = gateway.user_id()
    key = await gateway.new_api_key(user_token, name="ci")
    await gateway.sign_in("eve@example.com")
    eve = gateway.user_id("eve@example.com")
    record(gateway, ada, at=at(3), key_id=key["id"], requests=1, cost_micros=1_000_000)
    record(gateway, eve, at=at(3), requests=2, cost_micros=500_000)
    admin = await gateway.sign_in_admin()

    everyone = (await usage(gateway, admin, "/api/v1/admin/usage", group_by="user", **NOVEMBER)).json()
    assert {line["group"]: line["cost"] for line in everyone["data"]} == {ada: 1.0, eve: 0.5}
    assert everyone["total"]["requests"] == 3 and everyone["storage_bytes"] is None

    one = await usage(gateway, admin, "/api/v1/admin/usage", user_id=ada, group_by="key", **NOVEMBER)
    body = one.json()
    assert [(line["group"], line["key_name"], line["requests"]) for line in body["data"]] == [
        (key["id"], "ci", 1)
    ]
    assert body["storage_bytes"] == 0

    as_csv = await usage(gateway, admin, "/api/v1/admin/usage", group_by="user", format="csv", **NOVEMBER)
    header, *rows = csv.reader(io.StringIO(as_csv.text))
    assert header[0] == "group" and sorted(row[0] for row in rows) == sorted([ada, eve])


async def test_an_admin_asking_about_an_unknown_user_gets_404(gateway: Gateway) -> None:
    admin = await gateway.sign_in_admin()
    response = await usage(gateway, admin, "/api/v1/admin/usage", user_id="user_nobody", **NOVEMBER)
    assert response.status_code == 404 and response.json()["error"]["param"] == "user_id"


async def test_the_admin_route_checks_the_period_too(gateway: Gateway) -> None:
    admin = await gateway.sign_in_admin()
    response = await usage(gateway, admin, "/api/v1/admin/usage", **{"from": "2026-11-01"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "to"


async def test_the_openapi_document_describes_the_usage_routes(gateway: Gateway) -> None:
    paths = (await gateway.http.get("/api/v1/openapi.json")).json()["paths"]
    get = paths["/api/v1/usage"]["get"]
    assert {p["name"] for p in get["parameters"]} >= {"from", "to", "group_by", "format"}
    assert set(get["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    for path in (
        "/api/v1/admin/usage",
        "/api/v1/balance",
        "/api/v1/admin/users/{user_id}/credits",
        "/api/v1/quotas",
        "/api/v1/admin/users/{user_id}/quotas/{resource}",
        "/api/v1/prices",
        "/api/v1/admin/prices",
    ):
        assert path in paths
