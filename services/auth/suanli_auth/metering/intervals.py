"""Time arithmetic of GPU intervals: clipping to a window, splitting at UTC midnights, pricing.
Durations are counted in whole microseconds so that costs are exact integers, rounded once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta

from suanli_auth.domain import GpuInterval

MICROSECOND = timedelta(microseconds=1)
_MICROS_PER_HOUR = 3_600_000_000


def utc_day(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d")


def next_utc_midnight(at: datetime) -> datetime:
    return datetime.combine(at.astimezone(UTC).date() + timedelta(days=1), time(), tzinfo=UTC)


def token_cost_micros(prompt_tokens: int, completion_tokens: int, input_price: int, output_price: int) -> int:
    """Prices are per million tokens."""
    return _round_div(prompt_tokens * input_price + completion_tokens * output_price, 1_000_000)


def gpu_cost_micros(duration: timedelta, gpus: int, price_micros_per_hour: int) -> int:
    micros = max(duration // MICROSECOND, 0)
    return _round_div(micros * gpus * price_micros_per_hour, _MICROS_PER_HOUR)


def gpu_seconds(duration: timedelta, gpus: int) -> float:
    return max(duration.total_seconds(), 0.0) * gpus


def held(
    interval: GpuInterval, start: datetime, end: datetime, now: datetime
) -> tuple[datetime, datetime] | None:
    """The part of [start, end) the interval covers, an open one counting up to `now`."""
    begin = max(interval.started_at, start)
    finish = min(interval.ended_at or now, end)
    return (begin, finish) if finish > begin else None


def split_at_midnights(begin: datetime, end: datetime) -> Iterator[tuple[str, datetime, datetime]]:
    """(UTC day, piece start, piece end) of each day [begin, end) touches."""
    while begin < end:
        midnight = next_utc_midnight(begin)
        piece_end = min(midnight, end)
        yield utc_day(begin), begin, piece_end
        begin = piece_end


def _round_div(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up, for numerator >= 0."""
    return (2 * numerator + denominator) // (2 * denominator)
