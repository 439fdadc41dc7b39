"""/api/v1/usage (the caller's own) and /api/v1/admin/usage (any user's, or everyone's): the
metered usage of a period from auth's ledger, as JSON or CSV."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from suanli_inference_gateway.authentication.dependency import require_admin, require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.dependencies import gateway_deps
from suanli_inference_gateway.platform.usage.period import usage_period
from suanli_inference_gateway.platform.usage.protocol import (
    AdminUsageGrouping,
    UsageFormat,
    UsageGrouping,
    UsageReportObject,
)
from suanli_inference_gateway.platform.usage.report import usage_csv, usage_report

router = APIRouter(tags=["usage"])

FromParam = Annotated[
    str | None,
    Query(
        alias="from",
        description="Start of the period (required): an ISO date (2026-11-01) or date and time "
        "(UTC when no zone is given)",
    ),
]
ToParam = Annotated[
    str | None,
    Query(
        description="End of the period (required, at most 366 days after `from`): a date counts "
        "whole; a date and time is exclusive",
    ),
]
FormatParam = Annotated[
    UsageFormat,
    Query(
        alias="format",
        description='"csv": a file with the columns group, gpu_seconds, requests, input_tokens, '
        "output_tokens, cost, currency",
    ),
]
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "The usage report"}
}


async def _answer(
    request: Request,
    *,
    actor_user_id: str,
    user_id: str,
    from_: str | None,
    to: str | None,
    group_by: str,
    format_: UsageFormat,
) -> UsageReportObject | Response:
    period = usage_period(from_, to)
    deps = gateway_deps(request)
    report = await usage_report(
        deps.auth,
        deps.catalog,
        actor_user_id=actor_user_id,
        user_id=user_id,
        period=period,
        group_by=group_by,
    )
    return usage_csv(report, period) if format_ is UsageFormat.csv else report


@router.get("/usage", response_model=UsageReportObject, responses=CSV_RESPONSE)
async def get_usage(
    request: Request,
    from_: FromParam = None,
    to: ToParam = None,
    group_by: UsageGrouping = UsageGrouping.day,
    format_: FormatParam = UsageFormat.json,
    principal: Principal = Depends(require_principal),
) -> UsageReportObject | Response:
    """The caller's usage over a period: GPU time, inference requests and tokens, and their cost,
    grouped by day, model, GPU type or API key."""
    return await _answer(
        request,
        actor_user_id=principal.user_id,
        user_id=principal.user_id,
        from_=from_,
        to=to,
        group_by=group_by.value,
        format_=format_,
    )


@router.get("/admin/usage", response_model=UsageReportObject, responses=CSV_RESPONSE)
async def get_any_usage(
    request: Request,
    from_: FromParam = None,
    to: ToParam = None,
    group_by: AdminUsageGrouping = AdminUsageGrouping.day,
    format_: FormatParam = UsageFormat.json,
    user_id: Annotated[str | None, Query(description="Whose usage; absent: every user's")] = None,
    admin: Principal = Depends(require_admin),
) -> UsageReportObject | Response:
    """Admins: a user's usage, or every user's (`group_by=user` splits it by user)."""
    return await _answer(
        request,
        actor_user_id=admin.user_id,
        user_id=(user_id or "").strip(),
        from_=from_,
        to=to,
        group_by=group_by.value,
        format_=format_,
    )
