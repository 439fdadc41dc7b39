"""Group commit: concurrent requests (submits, agent reports) applied together in one unit of work.

On SQLite every write transaction is serialised and ends in a commit (and an fsync); applying
the requests that arrive while one transaction runs in the next one, together, costs one commit
per batch instead of one per request. Callers still get their own result or exception.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeAlias, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# What applying a batch returns: one result or one exception per item, in order.
Outcome: TypeAlias = R | BaseException


class GroupCommit(Generic[T, R]):
    def __init__(self, apply: Callable[[Sequence[T]], Awaitable[Sequence[Outcome[R]]]]) -> None:
        self._apply = apply
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        # Shielded: a caller that gives up does not cancel the batch the others wait for.
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Stops the batch in progress, if any (at shutdown, once nothing submits any more)."""
        if self._drainer is not None and not self._drainer.done():
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
        for _, future in self._pending:
            future.cancel()
        self._pending = []

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                outcomes: Sequence[Outcome[R]] = await self._apply([item for item, _ in batch])
            except Exception as exc:
                outcomes = [exc] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
