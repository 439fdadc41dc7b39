"""`suanli usage`, `suanli balance`, `suanli quotas`: what you used and what it cost, the credit
left, and your limits with what is in use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer

from suanli_cli.client import open_client
from suanli_cli.output import JsonFlag, exclusive, fields, human_bytes, note, print_json, table, when

DEFAULT_DAYS = 30


class Grouping(StrEnum):
    day = "day"
    model = "model"
    gpu_type = "gpu_type"
    key = "key"


GROUP_HEADINGS = {
    Grouping.day: "DAY",
    Grouping.model: "MODEL",
    Grouping.gpu_type: "GPU TYPE",
    Grouping.key: "KEY",
}


def _money(amount: float, currency: str) -> str:
    return f"{amount:,.6f}".rstrip("0").rstrip(".") + f" {currency}" if amount else f"0 {currency}"


def _count(value: int) -> str:
    return f"{value:,}"


def _hours(value: float) -> str:
    return f"{value:,.3f}" if value else "0"


def default_period(today: datetime | None = None) -> tuple[str, str]:
    """The last 30 days up to now, as dates (the API counts a `to` date whole)."""
    day = (today or datetime.now(UTC)).date()
    return (day - timedelta(days=DEFAULT_DAYS)).isoformat(), day.isoformat()


def usage(
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Start: a date (2026-11-01) or date and time, UTC unless a zone is given. "
            f"Default: {DEFAULT_DAYS} days ago.",
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option("--to", help="End: a date (counted whole) or date and time. Default: today."),
    ] = None,
    group_by: Annotated[
        Grouping, typer.Option("--group-by", help="What each row of the report adds up.")
    ] = Grouping.day,
    as_csv: Annotated[
        bool,
        typer.Option("--csv", help="Print the report as CSV instead of a table (redirect it to a file)."),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Show your usage over a period: GPU hours, requests, tokens and their cost."""
    exclusive(csv=as_csv, json=json_output)
    default_from, default_to = default_period()
    params = {"from": from_ or default_from, "to": to or default_to, "group_by": group_by.value}
    with open_client() as client:
        if as_csv:
            with client.stream("GET", "/api/v1/usage", params={**params, "format": "csv"}) as response:
                typer.echo(response.read(), nl=False)  # bytes: the file as the API wrote it
            return
        report = client.get("/api/v1/usage", params=params)
    if json_output:
        print_json(report)
        return
    _show_usage(report, group_by)


def _show_usage(report: dict[str, Any], group_by: Grouping) -> None:
    currency = report["currency"]
    by_key = group_by is Grouping.key
    heading = ["NAME"] if by_key else []

    def row(group: str, line: dict[str, Any], name: list[str]) -> list[object]:
        return [
            group,
            *name,
            _hours(line["gpu_hours"]),
            _count(line["requests"]),
            _count(line["input_tokens"]),
            _count(line["output_tokens"]),
            _money(line["cost"], currency),
        ]

    rows = [
        row(line["group"] or "(none)", line, [line.get("key_name") or "-"] if by_key else [])
        for line in report["data"]
    ]
    rows.append(row("total", report["total"], ["" for _ in heading]))
    table(
        [
            GROUP_HEADINGS[group_by],
            *heading,
            "GPU HOURS",
            "REQUESTS",
            "INPUT TOKENS",
            "OUTPUT TOKENS",
            "COST",
        ],
        rows,
        title=f"Usage from {report['from']} to {report['to']}",
    )
    storage = report.get("storage_bytes")
    if storage is not None:
        note(f"stored now: {human_bytes(storage)}")


def balance(json_output: JsonFlag = False) -> None:
    """Show your credit, the charges so far (running work included) and the balance."""
    with open_client() as client:
        shown = client.get("/api/v1/balance")
    if json_output:
        print_json(shown)
        return
    currency = shown["currency"]
    fields(
        [
            ("credits", _money(shown["credits"], currency)),
            ("charges", _money(shown["charges"], currency)),
            ("balance", _money(shown["balance"], currency)),
        ]
    )


def _amount(resource: str, value: int | None) -> str:
    if value is None:
        return "unknown"
    return human_bytes(value) if resource == "storage_bytes" else _count(value)


def quotas(json_output: JsonFlag = False) -> None:
    """Show your quotas and what is in use (tokens today, GPUs held, bytes stored)."""
    with open_client() as client:
        listed = client.get("/api/v1/quotas")
    if json_output:
        print_json(listed)
        return
    if not listed["data"]:
        note("no quotas: nothing is limited for you")
        return
    table(
        ["RESOURCE", "LIMIT", "USED", "RESETS"],
        (
            [
                q["resource"],
                _amount(q["resource"], q["limit"]),
                _amount(q["resource"], q["used"]),
                when(q.get("resets_at")),
            ]
            for q in listed["data"]
        ),
    )
