"""Conventions shared by the platform API's wire models."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class RequestModel(BaseModel):
    """A request body: unknown fields are an error (400 `unknown_parameter`), not silently dropped."""

    model_config = ConfigDict(extra="forbid")


def unix_seconds(value: datetime) -> int:
    """Times travel as Unix seconds, as in OpenAI's objects."""
    return int(value.timestamp())


def optional_unix_seconds(value: datetime | None) -> int | None:
    return None if value is None else unix_seconds(value)
