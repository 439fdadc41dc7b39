"""`suanli usage`, `balance` and `quotas`: what they ask the API and how they print its answers
(the routes themselves are tested in the gateway's tests)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from suanli_cli.client import ApiClient
from suanli_cli.commands import usage as usage_commands
from suanli_cli.config import Connection
from suanli_cli.main import app

API = "http://suanli.test"
REPORT = {
    "object": "usage",
    "from": "2026-11-01T00:00:00Z",
    "to": "2026-12-01T00:00:00Z",
    "group_by": "key",
    "currency": "USD",
    "data": [
        {
            "group": "",
            "key_name": None,
            "gpu_seconds": 5400.0,
            "gpu_hours": 1.5,
            "requests": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost": 3.75,
        },
        {
            "group": "key_01",
            "key_name": "laptop",
            "gpu_seconds": 0.0,
            "gpu_hours": 0.0,
            "requests": 1200,
            "input_tokens": 345678,
            "output_tokens": 9012,
            "cost": 0.069,
        },
    ],
    "total": {
        "gpu_seconds": 5400.0,
        "gpu_hours": 1.5,
        "requests": 1200,
        "input_tokens": 345678,
        "output_tokens": 9012,
        "cost": 3.819,
    },
    "storage_bytes": 3 * 1024 * 1024,
}
CSV = (
    "group,gpu_seconds,requests,input_tokens,output_tokens,cost,currency\r\n"
    "smollm2,0.0,2,7,3,0.000005,USD\r\n"
)


class FakeApi:
    """Answers the CLI's requests from a table of path -> handler, remembering what was asked."""

    def __init__(self, answers: dict[str, Callable[[httpx.Request], httpx.Response]]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["Authorization"] == "Bearer sk-test"
        return self.answers[request.url.path](request)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeApi]:
    def install(**answers: Callable[[httpx.Request], httpx.Response]) -> FakeApi:
        fake = FakeApi({path.replace("_", "/"): handler for path, handler in answers.items()})
        connection = Connection(api_url=API, credential="sk-test", credential_source="SUANLI_API_KEY")
        monkeypatch.setattr(
            usage_commands, "open_client", lambda: ApiClient(connection, transport=httpx.MockTransport(fake))
        )
        return fake

    return install


def answer(body: Any, status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: httpx.Response(status, json=body)


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_usage_defaults_to_the_last_30_days(api: Callable[..., FakeApi]) -> None:
    fake = api(**{"_api_v1_usage": answer({**REPORT, "group_by": "day", "data": []})})
    result = run("usage")
    assert result.exit_code == 0, result.output
    params = fake.requests[0].url.params
    today = datetime.now(UTC).date()
    assert params["to"] == today.isoformat()
    assert (today - datetime.fromisoformat(params["from"]).date()).days == 30
    assert params["group_by"] == "day" and "format" not in params


def test_usage_by_key_prints_a_table_with_names_and_a_total(api: Callable[..., FakeApi]) -> None:
    fake = api(**{"_api_v1_usage": answer(REPORT)})
    result = run("usage", "--from", "2026-11-01", "--to", "2026-11-30", "--group-by", "key")
    assert result.exit_code == 0, result.output
    assert dict(fake.requests[0].url.params) == {"from": "2026-11-01", "to": "2026-11-30", "group_by": "key"}
    lines = result.stdout.splitlines()
    assert "KEY" in lines[1] and "NAME" in lines[1] and "COST" in lines[1]
    laptop = next(line for line in lines if "key_01" in line)
    assert "laptop" in laptop and "1,200" in laptop and "345,678" in laptop and "0.069 USD" in laptop
    assert any(line.split()[0] == "(none)" and "1.500" in line for line in lines[2:])
    total = next(line for line in lines if line.strip().startswith("total"))
    assert "3.819 USD" in total
    assert "stored now: 3.0 MiB" in result.stdout


def test_usage_json_is_the_apis_answer(api: Callable[..., FakeApi]) -> None:
    api(**{"_api_v1_usage": answer(REPORT)})
    result = run("usage", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == REPORT


def test_usage_csv_prints_the_file(api: Callable[..., FakeApi]) -> None:
    fake = api(
        **{
            "_api_v1_usage": lambda _: httpx.Response(
                200, text=CSV, headers={"content-type": "text/csv; charset=utf-8"}
            )
        }
    )
    result = run("usage", "--csv", "--group-by", "model")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == CSV.encode()  # byte for byte (`stdout` folds \r\n)
    assert fake.requests[0].url.params["format"] == "csv"
    assert fake.requests[0].url.params["group_by"] == "model"


def test_a_bad_period_shows_the_apis_error(api: Callable[..., FakeApi]) -> None:
    error = {
        "error": {
            "message": "Invalid value for 'to': the end of the period must be after its start.",
            "type": "invalid_request_error",
            "param": "to",
            "code": "invalid_period",
        }
    }
    api(**{"_api_v1_usage": answer(error, 400)})
    result = run("usage", "--from", "2026-11-30", "--to", "2026-11-01")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: Invalid value for 'to': the end of the period must be after its start."
    )
    csv_result = run("usage", "--csv", "--from", "2026-11-30", "--to", "2026-11-01")
    assert csv_result.exit_code == 1 and "end of the period" in csv_result.stderr


def test_an_unknown_grouping_is_refused_before_asking(api: Callable[..., FakeApi]) -> None:
    fake = api()
    result = run("usage", "--group-by", "user")
    assert result.exit_code == 2 and fake.requests == []


def test_balance_prints_credits_charges_and_balance(api: Callable[..., FakeApi]) -> None:
    body = {
        "object": "balance",
        "user_id": "user_1",
        "credits": 25.5,
        "charges": 1.234567,
        "balance": 24.265433,
        "currency": "USD",
    }
    api(**{"_api_v1_balance": answer(body)})
    result = run("balance")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in result.stdout.splitlines()}
    assert rows == {"credits": "25.5 USD", "charges": "1.234567 USD", "balance": "24.265433 USD"}
    assert json.loads(run("balance", "--json").stdout) == body


def test_a_negative_balance_reads_as_one(api: Callable[..., FakeApi]) -> None:
    body = {"object": "balance", "user_id": "u", "credits": 0, "charges": 2, "balance": -2, "currency": "EUR"}
    api(**{"_api_v1_balance": answer(body)})
    assert "balance  -2 EUR" in run("balance").stdout


def test_quotas_print_limits_and_use(api: Callable[..., FakeApi]) -> None:
    resets = int(datetime(2026, 11, 3, tzinfo=UTC).timestamp())
    body = {
        "object": "list",
        "data": [
            {"object": "quota", "resource": "gpu:cpu", "limit": 2, "used": 1, "resets_at": None},
            {"object": "quota", "resource": "storage_bytes", "limit": 2**30, "used": None, "resets_at": None},
            {
                "object": "quota",
                "resource": "tokens_per_day",
                "limit": 100000,
                "used": 1234,
                "resets_at": resets,
            },
        ],
    }
    api(**{"_api_v1_quotas": answer(body)})
    result = run("quotas")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "1.0 GiB" in rows["storage_bytes"] and "unknown" in rows["storage_bytes"]
    assert "100,000" in rows["tokens_per_day"] and "1,234" in rows["tokens_per_day"]
    assert datetime.fromtimestamp(resets).strftime("%Y-%m-%d") in rows["tokens_per_day"]
    assert json.loads(run("quotas", "--json").stdout) == body


def test_without_quotas_nothing_is_limited(api: Callable[..., FakeApi]) -> None:
    api(**{"_api_v1_quotas": answer({"object": "list", "data": []})})
    result = run("quotas")
    assert result.exit_code == 0 and "nothing is limited" in result.stdout


def test_the_commands_have_help() -> None:
    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    for command in ("usage", "balance", "quotas"):
        assert command in top.stdout
        shown = runner.invoke(app, [command, "--help"])
        assert shown.exit_code == 0 and "--json" in shown.stdout
    usage_help = runner.invoke(app, ["usage", "--help"], env={"COLUMNS": "200"}).stdout
    assert all(flag in usage_help for flag in ("--from", "--to", "--group-by", "--csv"))
