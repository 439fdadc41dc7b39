"""OpenAI's cursor pagination (`limit`, `after`, `order`) over a list the owning service returned whole."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from fastapi import Query

from suanli_common.errors import InvalidRequest

LIMIT = Query(20, ge=1, le=100, description="How many to return")
AFTER = Query(None, max_length=128, description="The last id of the previous page")


class HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=HasId)


def page(items: Sequence[T], after: str | None, limit: int) -> tuple[list[T], bool]:
    """The `limit` items after the one with id `after` (from the start without it); has_more."""
    start = 0
    if after is not None:
        ids = [item.id for item in items]
        if after not in ids:
            raise InvalidRequest(f"no item {after!r} in this list", param="after")
        start = ids.index(after) + 1
    chosen = list(items[start : start + limit])
    return chosen, start + limit < len(items)
