"""OpenAI's attribute filters (vector store search `filters`) as Qdrant payload filters.

A comparison `{type: eq|ne|gt|gte|lt|lte|in|nin, key, value}` tests one attribute of a
document; a compound `{type: and|or, filters: [...]}` combines them. Attributes are stored under
`attributes.<key>` in every chunk's payload."""

from __future__ import annotations

from typing import Any

from qdrant_client import models

from suanli_common.errors import InvalidRequest

_RANGES = {"gt", "gte", "lt", "lte"}
MAX_DEPTH = 8


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="filters", code="invalid_filter")


def _comparison(spec: dict[str, Any]) -> models.Filter:
    kind, key, value = spec.get("type"), spec.get("key"), spec.get("value")
    if not isinstance(key, str) or not key:
        raise _invalid("a comparison filter needs a string 'key'")
    field = f"attributes.{key}"
    if kind in ("eq", "ne"):
        if not isinstance(value, str | int | float | bool):
            raise _invalid(f"'{kind}' compares with a string, number or boolean")
        condition = (
            models.FieldCondition(key=field, range=models.Range(gte=value, lte=value))
            if isinstance(value, float)  # Qdrant matches keywords, integers and booleans exactly
            else models.FieldCondition(key=field, match=models.MatchValue(value=value))
        )
        return models.Filter(must=[condition]) if kind == "eq" else models.Filter(must_not=[condition])
    if kind in _RANGES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _invalid(f"'{kind}' compares with a number")
        return models.Filter(
            must=[models.FieldCondition(key=field, range=models.Range(**{kind: float(value)}))]
        )
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            raise _invalid(f"'{kind}' takes a list of strings or integers")
        match: models.MatchAny | models.MatchExcept = (
            models.MatchAny(any=value) if kind == "in" else models.MatchExcept(**{"except": value})
        )
        return models.Filter(must=[models.FieldCondition(key=field, match=match)])
    raise _invalid(f"unknown filter type {kind!r}: use eq, ne, gt, gte, lt, lte, in, nin, and, or")


def to_qdrant(spec: Any, depth: int = 0) -> models.Filter:
    if depth > MAX_DEPTH:
        raise _invalid(f"filters nest at most {MAX_DEPTH} levels deep")
    if not isinstance(spec, dict):
        raise _invalid("a filter is an object with a 'type'")
    if spec.get("type") in ("and", "or"):
        parts = spec.get("filters")
        if not isinstance(parts, list) or not parts:
            raise _invalid(f"an '{spec['type']}' filter needs a non-empty 'filters' list")
        inner: list[models.Condition] = [to_qdrant(part, depth + 1) for part in parts]
        return models.Filter(must=inner) if spec["type"] == "and" else models.Filter(should=inner)
    return _comparison(spec)
