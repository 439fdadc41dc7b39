"""Queries against the metering tables (the usage ledger, prices, credits), within the caller's
unit of work. Sums are portable SQL; per-interval arithmetic is left to `intervals`."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from suanli_auth.domain import ANY_NAME, GpuHold, GpuInterval, IntervalKind, PriceKind, UsageGrouping
from suanli_auth.models import CreditRow, GpuIntervalRow, PriceRow, TokenUsageRow

# The column token usage is grouped by; GPU type is not a property of a request (one group, "").
_TOKEN_GROUP: dict[UsageGrouping, Any] = {
    UsageGrouping.day: TokenUsageRow.day,
    UsageGrouping.model: TokenUsageRow.model,
    UsageGrouping.key: TokenUsageRow.api_key_id,
    UsageGrouping.user: TokenUsageRow.user_id,
}


def _int(value: Any) -> int:
    # SUM is NULL over no rows, and a NUMERIC (Decimal) on PostgreSQL.
    return int(value or 0)


def gpu_interval(row: GpuIntervalRow) -> GpuInterval:
    assert row.started_at is not None, "only started intervals are read back"
    hold = GpuHold(
        kind=IntervalKind(row.kind),
        resource_id=row.resource_id,
        attempt=row.attempt,
        owner_id=row.owner_id,
        gpu_type=row.gpu_type,
        gpus=row.gpus,
        model=row.model,
        job_type=row.job_type,
    )
    return GpuInterval(
        hold=hold,
        started_at=row.started_at,
        ended_at=row.ended_at,
        price_micros_per_hour=row.price_micros_per_hour,
    )


class MeteringRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    # prices

    async def prices(self) -> Sequence[PriceRow]:
        return (await self._session.scalars(select(PriceRow).order_by(PriceRow.kind, PriceRow.name))).all()

    async def has_prices(self) -> bool:
        return await self._session.scalar(select(PriceRow.kind).limit(1)) is not None

    async def put_price(self, kind: PriceKind, name: str, price_micros: int) -> None:
        row = await self._session.get(PriceRow, (kind.value, name))
        if row is None:
            self._session.add(PriceRow(kind=kind.value, name=name, price_micros=price_micros))
        else:
            row.price_micros = price_micros
        await self._session.flush()

    async def price_of(self, kind: PriceKind, name: str) -> int:
        """The price of `name`, else of every other name ("*"), else 0."""
        return _price(await self._prices((kind.value,), (name,)), kind.value, name)

    async def token_prices(self, models: Collection[str]) -> dict[str, tuple[int, int]]:
        """(input, output) price per million tokens of each model, each as `price_of`, in one query."""
        kinds = (PriceKind.input_tokens.value, PriceKind.output_tokens.value)
        prices = await self._prices(kinds, models)
        return {model: (_price(prices, kinds[0], model), _price(prices, kinds[1], model)) for model in models}

    async def _prices(self, kinds: Collection[str], names: Collection[str]) -> dict[tuple[str, str], int]:
        """The stored prices of these kinds for these names and "*", by (kind, name)."""
        rows = (
            await self._session.execute(
                select(PriceRow.kind, PriceRow.name, PriceRow.price_micros).where(
                    PriceRow.kind.in_(kinds), PriceRow.name.in_([*names, ANY_NAME])
                )
            )
        ).all()
        return {(kind, name): price for kind, name, price in rows}

    # token usage

    async def add_new_token_usages(self, rows: Sequence[TokenUsageRow]) -> set[str]:
        """Inserts the rows whose event id is not stored yet (a redelivered fact, or one a
        concurrent delivery stored first, is skipped, not an error); returns the ids it stored.
        One statement, on the table (no ORM unit of work), with the rows as parameters so that its
        compiled form is cached (a VALUES list of rows is compiled anew every time)."""
        if not rows:
            return set()
        table = TokenUsageRow.__table__
        insert = postgresql.insert if self._session.get_bind().dialect.name == "postgresql" else sqlite.insert
        statement = insert(table).on_conflict_do_nothing(index_elements=["id"]).returning(table.c.id)
        columns = [column.key for column in table.columns]
        parameters = [{column: getattr(row, column) for column in columns} for row in rows]
        return set((await self._session.scalars(statement, parameters)).all())

    async def token_lines(
        self, user_id: str | None, start: datetime, end: datetime, grouping: UsageGrouping
    ) -> list[tuple[str, int, int, int, int]]:
        """(group, requests, prompt tokens, completion tokens, cost) of requests in [start, end)."""
        column = _TOKEN_GROUP.get(grouping)
        totals = (
            func.count(),
            func.sum(TokenUsageRow.prompt_tokens),
            func.sum(TokenUsageRow.completion_tokens),
            func.sum(TokenUsageRow.cost_micros),
        )
        where = [TokenUsageRow.at >= start, TokenUsageRow.at < end]
        if user_id is not None:
            where.append(TokenUsageRow.user_id == user_id)
        if column is None:
            query = select(*totals).where(*where)
        else:
            query = select(column, *totals).where(*where).group_by(column)
        lines = []
        for row in (await self._session.execute(query)).all():
            group, values = (row[0], row[1:]) if column is not None else ("", row)
            requests, prompt, completion, cost = (_int(v) for v in values)
            if requests:
                lines.append((str(group), requests, prompt, completion, cost))
        return lines

    async def tokens_between(self, user_id: str, start: datetime, end: datetime) -> int:
        # By time, not by the day column: (user_id, at) is the index, and this runs on every
        # refresh of the gateway's token quota cache.
        return _int(
            await self._session.scalar(
                select(func.sum(TokenUsageRow.prompt_tokens + TokenUsageRow.completion_tokens)).where(
                    TokenUsageRow.user_id == user_id, TokenUsageRow.at >= start, TokenUsageRow.at < end
                )
            )
        )

    async def token_charges(self, user_id: str) -> int:
        return _int(
            await self._session.scalar(
                select(func.sum(TokenUsageRow.cost_micros)).where(TokenUsageRow.user_id == user_id)
            )
        )

    # GPU intervals

    async def interval(self, kind: str, resource_id: str, attempt: int) -> GpuIntervalRow | None:
        return await self._session.get(GpuIntervalRow, (kind, resource_id, attempt))

    async def add_interval(self, row: GpuIntervalRow) -> None:
        self._session.add(row)
        await self._session.flush()

    async def start_interval(self, kind: str, resource_id: str, attempt: int, at: datetime) -> None:
        """Moves an interval's start to `at` unless it started earlier: of the facts that start an
        interval, the earliest is its start (one statement, so concurrent starts cannot undo it)."""
        await self._session.execute(
            update(GpuIntervalRow)
            .where(
                GpuIntervalRow.kind == kind,
                GpuIntervalRow.resource_id == resource_id,
                GpuIntervalRow.attempt == attempt,
                or_(GpuIntervalRow.started_at.is_(None), GpuIntervalRow.started_at > at),
            )
            .values(started_at=at)
        )

    async def close_intervals(
        self, kind: str, resource_id: str, at: datetime, before_attempt: int | None = None
    ) -> None:
        """Ends the intervals of a job or deployment (of attempts before `before_attempt`) at `at`,
        unless they ended earlier: of the facts that end an interval, the earliest is its end."""
        where: list[ColumnElement[bool]] = [
            GpuIntervalRow.kind == kind,
            GpuIntervalRow.resource_id == resource_id,
            or_(GpuIntervalRow.ended_at.is_(None), GpuIntervalRow.ended_at > at),
        ]
        if before_attempt is not None:
            where.append(GpuIntervalRow.attempt < before_attempt)
        await self._session.execute(update(GpuIntervalRow).where(*where).values(ended_at=at))

    async def intervals(
        self, owner_id: str | None, start: datetime | None = None, end: datetime | None = None
    ) -> list[GpuInterval]:
        """Started intervals (of one owner, or everyone's) that overlap [start, end)."""
        query = select(GpuIntervalRow).where(GpuIntervalRow.started_at.is_not(None))
        if owner_id is not None:
            query = query.where(GpuIntervalRow.owner_id == owner_id)
        if end is not None:
            query = query.where(GpuIntervalRow.started_at < end)
        if start is not None:
            query = query.where(or_(GpuIntervalRow.ended_at.is_(None), GpuIntervalRow.ended_at > start))
        return [gpu_interval(row) for row in await self._session.scalars(query)]

    async def open_gpus(self, owner_id: str) -> dict[str, int]:
        """GPUs held now by type."""
        rows = (
            await self._session.execute(
                select(GpuIntervalRow.gpu_type, func.sum(GpuIntervalRow.gpus))
                .where(
                    GpuIntervalRow.owner_id == owner_id,
                    GpuIntervalRow.started_at.is_not(None),
                    GpuIntervalRow.ended_at.is_(None),
                )
                .group_by(GpuIntervalRow.gpu_type)
            )
        ).all()
        return {gpu_type: _int(gpus) for gpu_type, gpus in rows}

    # credits

    async def add_credit(self, row: CreditRow) -> None:
        self._session.add(row)
        await self._session.flush()

    async def credits_total(self, user_id: str) -> int:
        return _int(
            await self._session.scalar(
                select(func.sum(CreditRow.amount_micros)).where(CreditRow.user_id == user_id)
            )
        )


def _price(prices: dict[tuple[str, str], int], kind: str, name: str) -> int:
    return prices.get((kind, name), prices.get((kind, ANY_NAME), 0))
