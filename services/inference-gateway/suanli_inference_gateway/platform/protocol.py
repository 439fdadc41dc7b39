"""Conventions shared by the platform API's wire models."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from suanli_common.errors import InvalidRequest
from suanli_common.ids import new_id

MAX_IDEMPOTENCY_KEY = 255
MICROS_PER_UNIT = 1_000_000


class RequestModel(BaseModel):
    """A request body: unknown fields are an error (400 `unknown_parameter`), not silently dropped."""

    model_config = ConfigDict(extra="forbid")


def unix_seconds(value: datetime) -> int:
    """Times travel as Unix seconds, as in OpenAI's objects."""
    return int(value.timestamp())


def optional_unix_seconds(value: datetime | None) -> int | None:
    return None if value is None else unix_seconds(value)


def currency_units(micros: int) -> float:
    """Money travels in whole currency units on the API (auth keeps millionths: micros)."""
    return round(micros / MICROS_PER_UNIT, 6)


def micros_of(amount: float) -> int:
    return round(amount * MICROS_PER_UNIT)


def checked_idempotency_key(idempotency_key: str | None) -> str:
    """The caller's Idempotency-Key, or "" without one."""
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters", param="Idempotency-Key"
        )
    return idempotency_key or ""


def client_request_id(idempotency_key: str | None) -> str:
    """What makes a create idempotent at the scheduler: the caller's Idempotency-Key, else unique."""
    return checked_idempotency_key(idempotency_key) or new_id("req")
