"""Wire models of /api/v1/usage and /api/v1/admin/usage."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, Field

from suanli_inference_gateway.clients.auth import UsageLine
from suanli_inference_gateway.platform.protocol import currency_units


class UsageGrouping(enum.StrEnum):
    day = "day"
    model = "model"
    gpu_type = "gpu_type"
    key = "key"


class AdminUsageGrouping(enum.StrEnum):
    day = "day"
    model = "model"
    gpu_type = "gpu_type"
    key = "key"
    user = "user"


class UsageFormat(enum.StrEnum):
    json = "json"
    csv = "csv"


class UsageTotals(BaseModel):
    gpu_seconds: float = Field(description="GPU slot-seconds: 2 GPUs for 10 s count 20")
    gpu_hours: float = Field(description="The same in hours")
    requests: int = Field(description="Inference requests answered")
    input_tokens: int = Field(description="Prompt tokens")
    output_tokens: int = Field(description="Completion tokens")
    cost: float = Field(description="What the usage cost, in the report's currency")

    @staticmethod
    def fields_of(line: UsageLine) -> dict[str, float | int]:
        return {
            "gpu_seconds": round(line.gpu_seconds, 3),
            "gpu_hours": round(line.gpu_seconds / 3600, 6),
            "requests": line.requests,
            "input_tokens": line.input_tokens,
            "output_tokens": line.output_tokens,
            "cost": currency_units(line.cost_micros),
        }

    @classmethod
    def of(cls, line: UsageLine) -> UsageTotals:
        return cls.model_validate(cls.fields_of(line))


class UsageLineObject(UsageTotals):
    group: str = Field(
        description='The day (YYYY-MM-DD), model, GPU type, API key id or user id; "" for usage the '
        "grouping does not apply to (GPU time grouped by key, requests made with a session)"
    )
    key_name: str | None = Field(None, description="group_by=key: the key's name, when known")

    @classmethod
    def of_line(cls, line: UsageLine, key_name: str | None = None) -> UsageLineObject:
        return cls.model_validate({"group": line.group, "key_name": key_name, **cls.fields_of(line)})


class UsageReportObject(BaseModel):
    object: Literal["usage"] = "usage"
    from_: str = Field(alias="from", description="Start of the period (inclusive), ISO 8601 UTC")
    to: str = Field(
        description="End of the period (exclusive), ISO 8601 UTC; a date given as `to` counts whole, "
        "so the period ends at the next midnight"
    )
    group_by: str
    currency: str
    data: list[UsageLineObject] = Field(description="One line per group, ordered by group")
    total: UsageTotals
    storage_bytes: int | None = Field(
        description="What the user stores now (files and own models); null when the catalog cannot "
        "say, or for a report over every user"
    )
