"""Usage read back from the ledger: a report over a window grouped by day, model, GPU type, API key
or user, and what each quota of a user has in use now."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from suanli_auth.admins import require_admin
from suanli_auth.domain import (
    ANY_GPU_TYPE,
    TOKENS_PER_DAY,
    GpuInterval,
    QuotaStatus,
    UsageGrouping,
    UsageLine,
    UsageReport,
    gpu_type_of_quota,
)
from suanli_auth.metering.intervals import (
    gpu_cost_micros,
    gpu_seconds,
    held,
    next_utc_midnight,
    split_at_midnights,
)
from suanli_auth.metering.repository import MeteringRepository
from suanli_auth.repository import AuthRepository
from suanli_auth.service import Clock, utc_now
from suanli_common.db import Database
from suanli_common.errors import InvalidRequest, NotFound

MAX_WINDOW = timedelta(days=366)


def checked_window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    # The params are named as the REST API names them (from, to): the gateway passes them through.
    if start is None:
        raise InvalidRequest("give the start of the period", param="from", code="missing_from")
    if end is None:
        raise InvalidRequest("give the end of the period", param="to", code="missing_to")
    if end <= start:
        raise InvalidRequest(
            "the end of the period must be after its start", param="to", code="invalid_period"
        )
    if end - start > MAX_WINDOW:
        raise InvalidRequest(
            f"the period must be at most {MAX_WINDOW.days} days", param="to", code="period_too_long"
        )
    return start, end


def checked_grouping(group_by: str) -> UsageGrouping:
    try:
        return UsageGrouping(group_by or UsageGrouping.day)
    except ValueError:
        raise InvalidRequest(
            f"group_by must be one of {', '.join(g.value for g in UsageGrouping)}",
            param="group_by",
            code="invalid_group_by",
        ) from None


def interval_pieces(
    interval: GpuInterval, grouping: UsageGrouping, start: datetime, end: datetime, now: datetime
) -> Iterator[UsageLine]:
    """The interval's GPU time and cost within [start, end), one line per group it falls in."""
    span = held(interval, start, end, now)
    if span is None:
        return
    hold = interval.hold
    if grouping is UsageGrouping.day:
        pieces = list(split_at_midnights(*span))
    else:
        group = {
            UsageGrouping.model: hold.model,
            UsageGrouping.gpu_type: hold.gpu_type,
            UsageGrouping.key: "",
            UsageGrouping.user: hold.owner_id,
        }[grouping]
        pieces = [(group, *span)]
    for group, begin, finish in pieces:
        duration = finish - begin
        yield UsageLine(
            group=group,
            gpu_seconds=gpu_seconds(duration, hold.gpus),
            cost_micros=gpu_cost_micros(duration, hold.gpus, interval.price_micros_per_hour),
        )


class UsageReports:
    def __init__(self, db: Database, currency: str, clock: Clock = utc_now) -> None:
        self._db = db
        self._currency = currency
        self._clock = clock

    async def usage(
        self,
        actor_user_id: str,
        user_id: str,
        start: datetime | None,
        end: datetime | None,
        group_by: str,
    ) -> UsageReport:
        """`user_id` "": every user's (admins only, as is another user's, and grouping by user)."""
        start, end = checked_window(start, end)
        grouping = checked_grouping(group_by)
        now = self._clock()
        async with self._db.session() as session:
            auth = AuthRepository(session)
            if grouping is UsageGrouping.user or not user_id or user_id != actor_user_id:
                await require_admin(auth, actor_user_id, "see the usage of other users")
                if user_id and await auth.get_user(user_id) is None:
                    raise NotFound(f"no user {user_id!r}", param="user_id", code="user_not_found")
            repo = MeteringRepository(session)
            owner = user_id or None
            token_lines = await repo.token_lines(owner, start, end, grouping)
            intervals = await repo.intervals(owner, start, min(end, now))
        lines: dict[str, UsageLine] = {}
        for group, requests, prompt, completion, cost in token_lines:
            line = lines.setdefault(group, UsageLine(group))
            line.add(UsageLine(group, 0.0, requests, prompt, completion, cost))
        for interval in intervals:
            for piece in interval_pieces(interval, grouping, start, end, now):
                lines.setdefault(piece.group, UsageLine(piece.group)).add(piece)
        total = UsageLine("")
        for line in lines.values():
            total.add(line)
        return UsageReport(lines=[lines[g] for g in sorted(lines)], total=total, currency=self._currency)

    async def quota_status(self, user_id: str) -> list[QuotaStatus]:
        """Each quota of the user with what is in use: tokens today (UTC), GPU slots held now."""
        now = self._clock()
        midnight = next_utc_midnight(now)
        async with self._db.session() as session:
            quotas = await AuthRepository(session).list_quotas(user_id)
            repo = MeteringRepository(session)
            resources = {q.resource for q in quotas}
            tokens_today = (
                await repo.tokens_between(user_id, midnight - timedelta(days=1), midnight)
                if TOKENS_PER_DAY in resources
                else 0
            )
            gpus_held = await repo.open_gpus(user_id) if any(map(gpu_type_of_quota, resources)) else {}
        statuses = []
        for quota in quotas:
            used, resets_at = 0, None
            if quota.resource == TOKENS_PER_DAY:
                used, resets_at = tokens_today, midnight
            elif (gpu_type := gpu_type_of_quota(quota.resource)) is not None:
                used = sum(gpus_held.values()) if gpu_type == ANY_GPU_TYPE else gpus_held.get(gpu_type, 0)
            statuses.append(QuotaStatus(quota.resource, quota.limit, used, resets_at))
        return statuses
