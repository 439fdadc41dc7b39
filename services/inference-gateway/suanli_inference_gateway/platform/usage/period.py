"""The period of a usage report, from the `from` and `to` query parameters: checked here so that a
bad one gets an error naming it before auth is asked (auth checks again)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from suanli_common.errors import InvalidRequest

MAX_PERIOD = timedelta(days=366)  # auth's bound on GetUsage


@dataclass(frozen=True, slots=True)
class UsagePeriod:
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC
    from_label: str  # how the bounds read in a file name: the date given, or a compact UTC time
    to_label: str


def _bound(value: str | None, param: str, *, is_end: bool) -> tuple[datetime, str]:
    text = (value or "").strip()
    if not text:
        raise InvalidRequest(
            f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    try:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            moment = datetime.fromisoformat(text)
        else:
            # A date counts whole: `to=2026-11-30` includes the 30th, so its end is the next midnight.
            moment = datetime.combine(day + timedelta(days=1) if is_end else day, time.min, UTC)
            return moment, day.isoformat()
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"Invalid value for '{param}': give an ISO date (2026-11-01) or date and time "
            "(2026-11-01T12:00:00Z; UTC when no zone is given).",
            param=param,
            code="invalid_value",
        ) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment, moment.strftime("%Y-%m-%dT%H%M%SZ")


def usage_period(from_: str | None, to: str | None) -> UsagePeriod:
    start, from_label = _bound(from_, "from", is_end=False)
    end, to_label = _bound(to, "to", is_end=True)
    if end <= start:
        raise InvalidRequest(
            "Invalid value for 'to': the end of the period must be after its start.",
            param="to",
            code="invalid_period",
        )
    if end - start > MAX_PERIOD:
        raise InvalidRequest(
            f"Invalid value for 'to': the period must be at most {MAX_PERIOD.days} days.",
            param="to",
            code="period_too_long",
        )
    return UsagePeriod(start=start, end=end, from_label=from_label, to_label=to_label)


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
