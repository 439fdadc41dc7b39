"""The usage ledger: records what inference requests used (usage.recorded) and how long jobs and
deployments held GPU slots (the scheduler's job.* and deployment.* facts), each fact once.

Facts arrive in any order and any number of times (JetStream redelivers, and a consumer handles a
fetched batch concurrently), so every write is idempotent and order-free. A token row is keyed by
its event's id. An interval is keyed by (kind, resource, attempt) and its ends are the earliest of
the facts that report them: its start is the earliest start fact (deploying before ready), its end
the earliest end fact. An attempt's own end (requeued, or the job's final fact) is never later
than a job's final fact, which also ends every earlier attempt still open. An end that arrives
before its start leaves the interval ended and unstarted; the start fills it in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from suanli_auth.domain import (
    DeploymentFact,
    GpuHold,
    JobFact,
    PriceKind,
    TokenUsage,
)
from suanli_auth.metering.intervals import token_cost_micros, utc_day
from suanli_auth.metering.repository import MeteringRepository
from suanli_auth.models import AuthBase, GpuIntervalRow, TokenUsageRow
from suanli_common.db import Database
from suanli_common.logging import get_logger

log = get_logger(__name__)

JOB_ENDS = frozenset({"succeeded", "failed", "cancelled", "timed_out"})
DEPLOYMENT_HOLDING = frozenset({"deploying", "ready"})
# A deployment is billed until its owner deletes it (stopping), not until its replicas drained.
DEPLOYMENT_ENDS = frozenset({"stopping", "stopped", "failed"})


def _fits(row: AuthBase) -> bool:
    """Whether every string of the row fits its column (a fact too long for it is refused:
    redelivering it would fail the same way forever)."""
    for column in row.__table__.columns:
        length = getattr(column.type, "length", None)
        value = getattr(row, column.key)
        if length is not None and isinstance(value, str) and len(value) > length:
            return False
    return True


def _token_row(usage: TokenUsage) -> TokenUsageRow | None:
    """The ledger row of a usage, its cost still unpriced; None when the usage is refused."""
    if not usage.user_id:
        log.warning("usage without a user refused", event_id=usage.event_id)
        return None
    row = TokenUsageRow(
        id=usage.event_id,
        user_id=usage.user_id,
        api_key_id=usage.api_key_id,
        model=usage.model,
        deployment_id=usage.deployment_id,
        endpoint=usage.endpoint,
        prompt_tokens=max(usage.prompt_tokens, 0),
        completion_tokens=max(usage.completion_tokens, 0),
        at=usage.at,
        day=utc_day(usage.at),
        cost_micros=0,
    )
    if not _fits(row):
        log.warning("usage with over-long fields refused", event_id=usage.event_id)
        return None
    return row


async def _once_more_on_conflict(write: Callable[[], Awaitable[None]]) -> None:
    try:
        await write()
    except IntegrityError:
        # A concurrent delivery of a fact about the same interval inserted it first; the second
        # pass finds the row and updates it instead.
        await write()


class UsageLedger:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record_tokens(self, usage: TokenUsage) -> bool:
        """Records one answered request; False when it was recorded already (or is refused)."""
        (recorded,) = await self.record_token_batch([usage])
        return recorded

    async def record_token_batch(self, usages: Sequence[TokenUsage]) -> list[bool]:
        """Records answered requests in one transaction, each as `record_tokens` would: per usage,
        True once stored by this call, False when it was stored already (by an earlier delivery, a
        concurrent one, or earlier in the batch) or is refused. On an error none is stored.

        The gateway answers requests by the hundred a second; a transaction per request cost auth
        ~3 ms of CPU each, a batch costs one read of prices and one insert."""
        outcomes = [False] * len(usages)
        rows: dict[str, tuple[int, TokenUsageRow]] = {}  # event id -> (first index, row)
        for index, usage in enumerate(usages):
            if usage.event_id in rows:
                continue  # the same fact twice in one batch: the first one counts
            if (row := _token_row(usage)) is not None:
                rows[usage.event_id] = (index, row)
        if not rows:
            return outcomes
        async with self._db.session() as session:
            repo = MeteringRepository(session)
            prices = await repo.token_prices({row.model for _, row in rows.values()})
            for _, row in rows.values():
                input_price, output_price = prices[row.model]
                row.cost_micros = token_cost_micros(
                    row.prompt_tokens, row.completion_tokens, input_price, output_price
                )
            stored = await repo.add_new_token_usages([row for _, row in rows.values()])
        for event_id in stored:
            outcomes[rows[event_id][0]] = True
        return outcomes

    async def job_changed(self, fact: JobFact) -> None:
        hold = fact.hold
        if fact.fact == "running":
            await self._open(hold, fact.at)
        elif fact.fact == "requeued":
            # The requeued fact carries the next attempt's number and the slots of the attempt it ended.
            await self._close(replace(hold, attempt=hold.attempt - 1), fact.at, before_attempt=hold.attempt)
        elif fact.fact in JOB_ENDS:
            await self._close(hold, fact.at, before_attempt=None)

    async def deployment_changed(self, fact: DeploymentFact) -> None:
        if fact.status in DEPLOYMENT_HOLDING:
            await self._open(fact.hold, fact.at)
        elif fact.status in DEPLOYMENT_ENDS:
            await self._close(fact.hold, fact.at, before_attempt=None)

    async def _open(self, hold: GpuHold, at: datetime) -> None:
        if hold.gpus <= 0:  # holds no slots: nothing to meter
            return

        async def write() -> None:
            async with self._db.session() as session:
                repo = MeteringRepository(session)
                if await repo.interval(hold.kind.value, hold.resource_id, hold.attempt) is None:
                    await self._add_interval(repo, hold, started_at=at, ended_at=None)
                else:
                    await repo.start_interval(hold.kind.value, hold.resource_id, hold.attempt, at)

        await _once_more_on_conflict(write)

    async def _close(self, ended: GpuHold, at: datetime, *, before_attempt: int | None) -> None:
        """Ends `ended` and every other interval of its job or deployment (before `before_attempt`)."""

        async def write() -> None:
            async with self._db.session() as session:
                repo = MeteringRepository(session)
                await repo.close_intervals(ended.kind.value, ended.resource_id, at, before_attempt)
                # An end before its start: remember the interval ended, so the start cannot open it.
                if (
                    ended.gpus > 0
                    and await repo.interval(ended.kind.value, ended.resource_id, ended.attempt) is None
                ):
                    await self._add_interval(repo, ended, started_at=None, ended_at=at)

        await _once_more_on_conflict(write)

    @staticmethod
    async def _add_interval(
        repo: MeteringRepository, hold: GpuHold, *, started_at: datetime | None, ended_at: datetime | None
    ) -> None:
        row = GpuIntervalRow(
            kind=hold.kind.value,
            resource_id=hold.resource_id,
            attempt=hold.attempt,
            owner_id=hold.owner_id,
            gpu_type=hold.gpu_type,
            gpus=hold.gpus,
            started_at=started_at,
            ended_at=ended_at,
            price_micros_per_hour=await repo.price_of(PriceKind.gpu_hour, hold.gpu_type),
            model=hold.model,
            job_type=hold.job_type,
        )
        if not _fits(row):
            log.warning(
                "GPU usage with over-long fields refused", kind=hold.kind.value, resource_id=hold.resource_id
            )
            return
        await repo.add_interval(row)
