"""The auth service as the gateway sees it: domain dataclasses in, domain dataclasses out.

Errors need no translation here: the gRPC client interceptor already raises the `SuanliError`
the auth service raised (class, code and param), which the edge renders as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from suanli_common.proto.suanli.v1 import auth_pb2, auth_pb2_grpc

AUTH_SERVICE = "suanli.v1.AuthService"
# SetQuota and SetPrices are retried too: each replaces a value, so a second delivery changes
# nothing. AddCredit is not: a retried credit would be counted twice.
IDEMPOTENT_METHODS = (
    "Authenticate",
    "GetSigningKeys",
    "GetUser",
    "ListApiKeys",
    "ListQuotas",
    "SetQuota",
    "GetQuotaStatus",
    "GetUsage",
    "GetBalance",
    "GetPrices",
    "SetPrices",
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for. `key_id` is set when the caller used an API key."""

    user_id: str
    email: str
    role: str
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    role: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LoginResult:
    access_token: str
    token_type: str
    expires_in: int
    user: User | None


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
    key: str  # the secret, shown to the user once


@dataclass(frozen=True, slots=True)
class SigningKeys:
    public_keys_pem: dict[str, str]  # kid -> PEM
    issuer: str


@dataclass(frozen=True, slots=True)
class Quota:
    user_id: str
    resource: str  # "tokens_per_day", "storage_bytes", "gpu:<type>" ("gpu:*": every type)
    limit: int


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    """A quota with what is in use now: tokens today (UTC), GPU slots held now; storage_bytes is
    0 here (the catalog holds the files)."""

    resource: str
    limit: int
    used: int
    resets_at: datetime | None  # tokens_per_day: the next UTC midnight


@dataclass(frozen=True, slots=True)
class UsageLine:
    group: str  # a day (YYYY-MM-DD), model, GPU type, API key id or user id; "" for the rest
    gpu_seconds: float
    requests: int
    input_tokens: int
    output_tokens: int
    cost_micros: int


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
    balance_micros: int
    currency: str


@dataclass(frozen=True, slots=True)
class Price:
    kind: str  # "gpu_hour" | "input_tokens" | "output_tokens" (the last two per million tokens)
    name: str  # the GPU type or the model; "*": every other one
    price_micros: int


@dataclass(frozen=True, slots=True)
class PriceList:
    prices: list[Price]
    currency: str


class AuthApi(Protocol):
    async def sign_up(self, email: str, password: str) -> User: ...
    async def login(
        self, email: str, *, password: str | None = None, code: str | None = None
    ) -> LoginResult: ...
    async def request_email_code(self, email: str) -> int: ...
    async def authenticate(self, credential: str) -> Principal: ...
    async def get_signing_keys(self) -> SigningKeys: ...
    async def get_user(self, user_id: str) -> User: ...
    async def create_api_key(self, user_id: str, name: str) -> CreatedApiKey: ...
    async def list_api_keys(self, user_id: str) -> list[ApiKey]: ...
    async def revoke_api_key(self, user_id: str, key_id: str) -> ApiKey: ...
    async def set_quota(self, actor_user_id: str, quota: Quota) -> Quota: ...
    async def get_quota_status(self, user_id: str, *, timeout: float | None = None) -> list[QuotaStatus]: ...
    async def get_usage(
        self, actor_user_id: str, user_id: str, start: datetime, end: datetime, group_by: str
    ) -> UsageReport: ...
    async def get_balance(self, user_id: str) -> Balance: ...
    async def add_credit(
        self, actor_user_id: str, user_id: str, amount_micros: int, note: str, request_id: str = ""
    ) -> Balance: ...
    async def get_prices(self) -> PriceList: ...
    async def set_prices(self, actor_user_id: str, prices: list[Price]) -> PriceList: ...


def role_name(role: int) -> str:
    return "admin" if role == auth_pb2.ROLE_ADMIN else "user"


def _time(ts: Timestamp) -> datetime:
    return ts.ToDatetime(UTC)


def _user(msg: auth_pb2.User) -> User:
    return User(id=msg.id, email=msg.email, role=role_name(msg.role), created_at=_time(msg.created_at))


def _api_key(msg: auth_pb2.ApiKey) -> ApiKey:
    return ApiKey(
        id=msg.id,
        name=msg.name,
        prefix=msg.prefix,
        created_at=_time(msg.created_at),
        last_used_at=_time(msg.last_used_at) if msg.HasField("last_used_at") else None,
        revoked_at=_time(msg.revoked_at) if msg.HasField("revoked_at") else None,
    )


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def _usage_line(msg: auth_pb2.UsageLine) -> UsageLine:
    return UsageLine(
        group=msg.group,
        gpu_seconds=float(msg.gpu_seconds),
        requests=int(msg.requests),
        input_tokens=int(msg.input_tokens),
        output_tokens=int(msg.output_tokens),
        cost_micros=int(msg.cost_micros),
    )


def _balance(msg: auth_pb2.Balance) -> Balance:
    return Balance(
        user_id=msg.user_id,
        credits_micros=int(msg.credits_micros),
        charges_micros=int(msg.charges_micros),
        balance_micros=int(msg.balance_micros),
        currency=msg.currency,
    )


def _prices(msg: auth_pb2.Prices) -> PriceList:
    return PriceList(
        prices=[Price(kind=p.kind, name=p.name, price_micros=int(p.price_micros)) for p in msg.prices],
        currency=msg.currency,
    )


class AuthClient:
    """`AuthApi` over gRPC (a channel from `suanli_common.grpc.make_channel`)."""

    def __init__(self, stub: auth_pb2_grpc.AuthServiceStub) -> None:
        self._stub = stub

    async def sign_up(self, email: str, password: str) -> User:
        return _user(await self._stub.SignUp(auth_pb2.SignUpRequest(email=email, password=password)))

    async def login(self, email: str, *, password: str | None = None, code: str | None = None) -> LoginResult:
        request = auth_pb2.LoginRequest(email=email)
        if password is not None:
            request.password = password
        if code is not None:
            request.code = code
        response = await self._stub.Login(request)
        return LoginResult(
            access_token=response.access_token,
            token_type=response.token_type or "bearer",
            expires_in=int(response.expires_in),
            user=_user(response.user) if response.HasField("user") else None,
        )

    async def request_email_code(self, email: str) -> int:
        response = await self._stub.RequestEmailCode(auth_pb2.RequestEmailCodeRequest(email=email))
        return int(response.expires_in)

    async def authenticate(self, credential: str) -> Principal:
        msg = await self._stub.Authenticate(auth_pb2.AuthenticateRequest(credential=credential))
        return Principal(
            user_id=msg.user_id, email=msg.email, role=role_name(msg.role), key_id=msg.key_id or None
        )

    async def get_signing_keys(self) -> SigningKeys:
        response = await self._stub.GetSigningKeys(auth_pb2.GetSigningKeysRequest())
        return SigningKeys(
            public_keys_pem={key.kid: key.public_key_pem for key in response.keys}, issuer=response.issuer
        )

    async def get_user(self, user_id: str) -> User:
        return _user(await self._stub.GetUser(auth_pb2.GetUserRequest(user_id=user_id)))

    async def create_api_key(self, user_id: str, name: str) -> CreatedApiKey:
        response = await self._stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(user_id=user_id, name=name))
        return CreatedApiKey(api_key=_api_key(response.api_key), key=response.key)

    async def list_api_keys(self, user_id: str) -> list[ApiKey]:
        response = await self._stub.ListApiKeys(auth_pb2.ListApiKeysRequest(user_id=user_id))
        return [_api_key(key) for key in response.api_keys]

    async def revoke_api_key(self, user_id: str, key_id: str) -> ApiKey:
        return _api_key(
            await self._stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(user_id=user_id, key_id=key_id))
        )

    async def set_quota(self, actor_user_id: str, quota: Quota) -> Quota:
        request = auth_pb2.SetQuotaRequest(
            actor_user_id=actor_user_id,
            quota=auth_pb2.Quota(user_id=quota.user_id, resource=quota.resource, limit=quota.limit),
        )
        msg = await self._stub.SetQuota(request)
        return Quota(user_id=msg.user_id, resource=msg.resource, limit=int(msg.limit))

    async def get_quota_status(self, user_id: str, *, timeout: float | None = None) -> list[QuotaStatus]:
        response = await self._stub.GetQuotaStatus(
            auth_pb2.GetQuotaStatusRequest(user_id=user_id), timeout=timeout
        )
        return [
            QuotaStatus(
                resource=q.resource,
                limit=int(q.limit),
                used=int(q.used),
                resets_at=_time(q.resets_at) if q.HasField("resets_at") else None,
            )
            for q in response.quotas
        ]

    async def get_usage(
        self, actor_user_id: str, user_id: str, start: datetime, end: datetime, group_by: str
    ) -> UsageReport:
        request = auth_pb2.GetUsageRequest(
            actor_user_id=actor_user_id,
            user_id=user_id,
            start=_timestamp(start),
            end=_timestamp(end),
            group_by=group_by,
        )
        response = await self._stub.GetUsage(request)
        return UsageReport(
            lines=[_usage_line(line) for line in response.lines],
            total=_usage_line(response.total),
            currency=response.currency,
        )

    async def get_balance(self, user_id: str) -> Balance:
        return _balance(await self._stub.GetBalance(auth_pb2.GetBalanceRequest(user_id=user_id)))

    async def add_credit(
        self, actor_user_id: str, user_id: str, amount_micros: int, note: str, request_id: str = ""
    ) -> Balance:
        request = auth_pb2.AddCreditRequest(
            actor_user_id=actor_user_id,
            user_id=user_id,
            amount_micros=amount_micros,
            note=note,
            request_id=request_id,
        )
        return _balance(await self._stub.AddCredit(request))

    async def get_prices(self) -> PriceList:
        return _prices(await self._stub.GetPrices(auth_pb2.GetPricesRequest()))

    async def set_prices(self, actor_user_id: str, prices: list[Price]) -> PriceList:
        request = auth_pb2.SetPricesRequest(
            actor_user_id=actor_user_id,
            prices=[auth_pb2.Price(kind=p.kind, name=p.name, price_micros=p.price_micros) for p in prices],
        )
        return _prices(await self._stub.SetPrices(request))
