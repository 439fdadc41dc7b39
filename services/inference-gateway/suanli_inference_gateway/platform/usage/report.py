"""A usage report for the API: auth's ledger lines, with the API keys' names and the bytes stored
beside them, as the JSON object or as a CSV file."""

from __future__ import annotations

import asyncio
import csv
import io

from fastapi.responses import Response

from suanli_inference_gateway.clients.auth import ApiKey, AuthApi, UsageReport
from suanli_inference_gateway.clients.catalog import CatalogApi
from suanli_inference_gateway.platform.usage.period import UsagePeriod, iso_utc
from suanli_inference_gateway.platform.usage.protocol import (
    UsageLineObject,
    UsageReportObject,
    UsageTotals,
)
from suanli_inference_gateway.platform.usage.storage import stored_bytes

CSV_COLUMNS = ("group", "gpu_seconds", "requests", "input_tokens", "output_tokens", "cost", "currency")
# A cell starting with one of these is a formula to a spreadsheet; a model name is the user's to pick.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


async def _nothing() -> None:
    return None


async def usage_report(
    auth: AuthApi,
    catalog: CatalogApi,
    *,
    actor_user_id: str,
    user_id: str,
    period: UsagePeriod,
    group_by: str,
) -> UsageReportObject:
    """`user_id` "" (admins): every user's usage; then neither key names nor storage are known."""
    keys: list[ApiKey] | None
    report: UsageReport
    report, keys, storage = await asyncio.gather(
        auth.get_usage(actor_user_id, user_id, period.start, period.end, group_by),
        auth.list_api_keys(user_id) if group_by == "key" and user_id else _nothing(),
        stored_bytes(catalog, user_id) if user_id else _nothing(),
    )
    names = {key.id: key.name for key in keys or ()}
    return UsageReportObject.model_validate(
        {
            "from": iso_utc(period.start),
            "to": iso_utc(period.end),
            "group_by": group_by,
            "currency": report.currency,
            "data": [UsageLineObject.of_line(line, names.get(line.group)) for line in report.lines],
            "total": UsageTotals.of(report.total),
            "storage_bytes": storage,
        }
    )


def _cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def usage_csv(report: UsageReportObject, period: UsagePeriod) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for line in report.data:
        writer.writerow(
            [
                _cell(line.group),
                line.gpu_seconds,
                line.requests,
                line.input_tokens,
                line.output_tokens,
                f"{line.cost:.6f}",
                report.currency,
            ]
        )
    filename = f"suanli-usage-{period.from_label}-{period.to_label}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
