"""What the auth service's logic speaks in: plain dataclasses, no protobuf, no SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    user = "user"
    admin = "admin"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    role: Role
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    expires_in: int  # seconds


@dataclass(frozen=True, slots=True)
class LoginResult:
    access_token: AccessToken
    user: User


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    api_key: ApiKey
    secret: str  # shown to the user once, never stored


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    email: str
    role: Role
    key_id: str = ""  # empty when the caller used an access token


@dataclass(frozen=True, slots=True)
class Quota:
    user_id: str
    resource: str
    limit: int


TOKENS_PER_DAY = "tokens_per_day"
STORAGE_BYTES = "storage_bytes"
GPU_QUOTA_PREFIX = "gpu:"  # gpu:<type>: slots of a type held at once
ANY_GPU_TYPE = "*"  # gpu:*: slots of every type together


def gpu_type_of_quota(resource: str) -> str | None:
    """The GPU type a "gpu:<type>" resource limits ("*": all), None for other resources."""
    if not resource.startswith(GPU_QUOTA_PREFIX):
        return None
    gpu_type = resource.removeprefix(GPU_QUOTA_PREFIX)
    return gpu_type if gpu_type and gpu_type == gpu_type.strip() else None


def is_quota_resource(resource: str) -> bool:
    return resource in (TOKENS_PER_DAY, STORAGE_BYTES) or gpu_type_of_quota(resource) is not None


@dataclass(frozen=True, slots=True)
class PublicSigningKey:
    kid: str
    algorithm: str
    public_key_pem: str


# metering


class PriceKind(StrEnum):
    gpu_hour = "gpu_hour"  # per GPU-hour of a GPU type
    input_tokens = "input_tokens"  # per million prompt tokens of a model
    output_tokens = "output_tokens"  # per million completion tokens of a model


ANY_NAME = "*"  # the price of every name without its own


@dataclass(frozen=True, slots=True)
class Price:
    kind: PriceKind
    name: str  # the GPU type or the model; ANY_NAME: every other one
    price_micros: int


@dataclass(frozen=True, slots=True)
class PriceChange:
    """A price as an admin sent it, before it is checked."""

    kind: str
    name: str
    price_micros: int


@dataclass(frozen=True, slots=True)
class PriceList:
    prices: list[Price]
    currency: str


class IntervalKind(StrEnum):
    job = "job"
    deployment = "deployment"


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """One answered inference request (a usage.recorded fact)."""

    event_id: str
    at: datetime
    user_id: str
    api_key_id: str
    model: str
    deployment_id: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class GpuHold:
    """GPU slots one attempt of a job, or one deployment, holds (what its facts say)."""

    kind: IntervalKind
    resource_id: str
    attempt: int  # deployments: 0
    owner_id: str
    gpu_type: str
    gpus: int
    model: str = ""  # deployments: the served model
    job_type: str = ""


@dataclass(frozen=True, slots=True)
class JobFact:
    """A job.* fact: `fact` is the event type's last part (running, requeued, succeeded, ...);
    `hold` is the attempt the fact is about, with the slots it holds (0 when it holds none)."""

    fact: str
    at: datetime
    hold: GpuHold


@dataclass(frozen=True, slots=True)
class DeploymentFact:
    status: str  # pending, deploying, ready, failed, stopping, stopped
    at: datetime
    hold: GpuHold


@dataclass(frozen=True, slots=True)
class GpuInterval:
    """Time a hold was kept, priced at what a GPU-hour of its type cost when it began."""

    hold: GpuHold
    started_at: datetime
    ended_at: datetime | None  # None: still held
    price_micros_per_hour: int


class UsageGrouping(StrEnum):
    day = "day"
    model = "model"
    gpu_type = "gpu_type"
    key = "key"
    user = "user"


@dataclass(slots=True)
class UsageLine:
    group: str
    gpu_seconds: float = 0.0  # slot-seconds
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0

    def add(self, other: UsageLine) -> None:
        self.gpu_seconds += other.gpu_seconds
        self.requests += other.requests
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_micros += other.cost_micros


@dataclass(frozen=True, slots=True)
class UsageReport:
    lines: list[UsageLine]  # ordered by group
    total: UsageLine
    currency: str


@dataclass(frozen=True, slots=True)
class Balance:
    user_id: str
    credits_micros: int
    charges_micros: int
    currency: str

    @property
    def balance_micros(self) -> int:
        return self.credits_micros - self.charges_micros


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    resource: str
    limit: int
    used: int
    resets_at: datetime | None = None  # tokens_per_day: the next UTC midnight
