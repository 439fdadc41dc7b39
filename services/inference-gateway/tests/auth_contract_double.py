"""An in-process implementation of the `suanli.v1.AuthService` contract, for the gateway's unit
tests only (the real auth service across processes is covered by tests/integration).

It keeps users and keys in memory, signs real EdDSA access tokens, raises the same domain
errors auth raises, and counts the calls it receives so tests can see what reached it. Metering
(usage, quotas, credits, prices) follows the contract too: tests put usage records and today's
token counts in directly, standing for what auth's ledger learns from events.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from suanli_common.errors import Conflict, InvalidRequest, NotFound, PermissionDenied, Unauthenticated
from suanli_common.grpc import make_server
from suanli_common.ids import new_id
from suanli_common.proto.suanli.v1 import auth_pb2, auth_pb2_grpc
from suanli_common.testing import free_port

ISSUER = "suanli-auth"
TOKEN_TTL_S = 3600
CURRENCY = "USD"
MAX_PERIOD = timedelta(days=366)
GROUPINGS = ("day", "model", "gpu_type", "key", "user")
PRICE_KINDS = ("gpu_hour", "input_tokens", "output_tokens")


@dataclass
class _User:
    id: str
    email: str
    password: str
    role: int = auth_pb2.ROLE_USER
    created_at: float = field(default_factory=time.time)


@dataclass
class _Key:
    id: str
    user_id: str
    name: str
    secret: str
    created_at: float = field(default_factory=time.time)
    revoked_at: float | None = None
    last_used_at: float | None = None


@dataclass
class UsageRecord:
    """A piece of metered usage as auth's ledger holds it (an inference request, GPU time)."""

    user_id: str
    at: datetime
    model: str = ""
    gpu_type: str = ""
    key_id: str = ""
    gpu_seconds: float = 0.0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0


def _next_utc_midnight(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)


def _ts(seconds: float) -> dict[str, int]:
    return {"seconds": int(seconds), "nanos": int((seconds % 1) * 1e9)}


class AuthContractDouble(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.users: dict[str, _User] = {}
        self.keys: dict[str, _Key] = {}
        self.codes: dict[str, str] = {}
        self.signing_keys: dict[str, Ed25519PrivateKey] = {}
        self.current_kid = ""
        self.rotate_signing_key()
        self.usage: list[UsageRecord] = []
        self.quotas: dict[str, dict[str, int]] = {}  # user id -> resource -> limit
        self.tokens_today: Counter[str] = Counter()  # user id -> tokens in and out today
        self.credits: Counter[str] = Counter()  # user id -> micros
        self.prices: dict[tuple[str, str], int] = {}  # (kind, name) -> micros
        self.last_credit_note = ""

    # -- helpers for tests -------------------------------------------------------------------

    def rotate_signing_key(self) -> str:
        self.current_kid = new_id("kid")
        self.signing_keys[self.current_kid] = Ed25519PrivateKey.generate()
        return self.current_kid

    def issue_token(self, user: _User, *, ttl_s: int = TOKEN_TTL_S) -> str:
        now = int(time.time())
        claims = {
            "sub": user.id,
            "email": user.email,
            "role": "admin" if user.role == auth_pb2.ROLE_ADMIN else "user",
            "iat": now,
            "exp": now + ttl_s,
            "iss": ISSUER,
            "jti": new_id("tok"),
        }
        key = self.signing_keys[self.current_kid]
        return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": self.current_kid})

    def user_id_of(self, email: str) -> str:
        return self.users[email.lower()].id

    def _user_by_id(self, user_id: str) -> _User | None:
        return next((u for u in self.users.values() if u.id == user_id), None)

    def _require_admin(self, actor_user_id: str, action: str) -> None:
        actor = self._user_by_id(actor_user_id)
        if actor is None or actor.role != auth_pb2.ROLE_ADMIN:
            raise PermissionDenied(f"only an admin can {action}", code="admin_required")

    def _require_user(self, user_id: str) -> None:
        if self._user_by_id(user_id) is None:
            raise NotFound(f"no user {user_id!r}", param="user_id", code="user_not_found")

    def _balance_msg(self, user_id: str) -> auth_pb2.Balance:
        credits = self.credits[user_id]
        charges = sum(r.cost_micros for r in self.usage if r.user_id == user_id)
        return auth_pb2.Balance(
            user_id=user_id,
            credits_micros=credits,
            charges_micros=charges,
            balance_micros=credits - charges,
            currency=CURRENCY,
        )

    def _prices_msg(self) -> auth_pb2.Prices:
        return auth_pb2.Prices(
            prices=[
                auth_pb2.Price(kind=kind, name=name, price_micros=micros)
                for (kind, name), micros in sorted(self.prices.items())
            ],
            currency=CURRENCY,
        )

    def _user_msg(self, user: _User) -> auth_pb2.User:
        return auth_pb2.User(id=user.id, email=user.email, role=user.role, created_at=_ts(user.created_at))

    def _key_msg(self, key: _Key) -> auth_pb2.ApiKey:
        msg = auth_pb2.ApiKey(
            id=key.id, name=key.name, prefix=key.secret[:12], created_at=_ts(key.created_at)
        )
        if key.last_used_at is not None:
            msg.last_used_at.FromSeconds(int(key.last_used_at))
        if key.revoked_at is not None:
            msg.revoked_at.FromSeconds(int(key.revoked_at))
        return msg

    # -- the contract ------------------------------------------------------------------------

    async def SignUp(self, request: auth_pb2.SignUpRequest, context: object) -> auth_pb2.User:
        self.calls["SignUp"] += 1
        email = request.email.lower()
        if email in self.users:
            raise Conflict(
                "An account with this e-mail address already exists.", code="email_taken", param="email"
            )
        if len(request.password) < 8:
            raise InvalidRequest(
                "The password must have at least 8 characters.", code="weak_password", param="password"
            )
        user = _User(id=new_id("user"), email=email, password=request.password)
        self.users[email] = user
        return self._user_msg(user)

    async def Login(self, request: auth_pb2.LoginRequest, context: object) -> auth_pb2.LoginResponse:
        self.calls["Login"] += 1
        user = self.users.get(request.email.lower())
        which = request.WhichOneof("secret")
        ok = user is not None and (
            (which == "password" and request.password == user.password)
            or (which == "code" and self.codes.pop(user.email, None) == request.code)
        )
        if not ok or user is None:
            raise Unauthenticated("Incorrect e-mail address or password.", code="invalid_credentials")
        return auth_pb2.LoginResponse(
            access_token=self.issue_token(user),
            token_type="bearer",
            expires_in=TOKEN_TTL_S,
            user=self._user_msg(user),
        )

    async def RequestEmailCode(
        self, request: auth_pb2.RequestEmailCodeRequest, context: object
    ) -> auth_pb2.RequestEmailCodeResponse:
        self.calls["RequestEmailCode"] += 1
        if request.email.lower() in self.users:
            self.codes[request.email.lower()] = f"{secrets.randbelow(10**6):06d}"
        return auth_pb2.RequestEmailCodeResponse(expires_in=600)

    async def Authenticate(
        self, request: auth_pb2.AuthenticateRequest, context: object
    ) -> auth_pb2.Principal:
        self.calls["Authenticate"] += 1
        for key in self.keys.values():
            if key.secret == request.credential and key.revoked_at is None:
                key.last_used_at = time.time()
                user = next(u for u in self.users.values() if u.id == key.user_id)
                return auth_pb2.Principal(user_id=user.id, email=user.email, role=user.role, key_id=key.id)
        raise Unauthenticated("Incorrect API key provided.", code="invalid_api_key")

    async def GetSigningKeys(
        self, request: auth_pb2.GetSigningKeysRequest, context: object
    ) -> auth_pb2.GetSigningKeysResponse:
        self.calls["GetSigningKeys"] += 1
        keys = [
            auth_pb2.SigningKey(
                kid=kid,
                algorithm="EdDSA",
                public_key_pem=key.public_key()
                .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                .decode(),
            )
            for kid, key in self.signing_keys.items()
        ]
        return auth_pb2.GetSigningKeysResponse(keys=keys, issuer=ISSUER)

    async def GetUser(self, request: auth_pb2.GetUserRequest, context: object) -> auth_pb2.User:
        self.calls["GetUser"] += 1
        for user in self.users.values():
            if user.id == request.user_id:
                return self._user_msg(user)
        raise NotFound(f"No user {request.user_id}.", code="user_not_found")

    async def CreateApiKey(
        self, request: auth_pb2.CreateApiKeyRequest, context: object
    ) -> auth_pb2.CreateApiKeyResponse:
        self.calls["CreateApiKey"] += 1
        key = _Key(
            id=new_id("key"),
            user_id=request.user_id,
            name=request.name,
            secret="sk-" + secrets.token_urlsafe(32),
        )
        self.keys[key.id] = key
        return auth_pb2.CreateApiKeyResponse(api_key=self._key_msg(key), key=key.secret)

    async def ListApiKeys(
        self, request: auth_pb2.ListApiKeysRequest, context: object
    ) -> auth_pb2.ListApiKeysResponse:
        self.calls["ListApiKeys"] += 1
        mine = [self._key_msg(k) for k in self.keys.values() if k.user_id == request.user_id]
        return auth_pb2.ListApiKeysResponse(api_keys=mine)

    async def RevokeApiKey(self, request: auth_pb2.RevokeApiKeyRequest, context: object) -> auth_pb2.ApiKey:
        self.calls["RevokeApiKey"] += 1
        key = self.keys.get(request.key_id)
        if key is None or key.user_id != request.user_id:
            raise NotFound(f"No API key {request.key_id}.", code="api_key_not_found", param="key_id")
        if key.revoked_at is None:
            key.revoked_at = time.time()
        return self._key_msg(key)

    # -- quotas and metering -----------------------------------------------------------------

    async def SetQuota(self, request: auth_pb2.SetQuotaRequest, context: object) -> auth_pb2.Quota:
        self.calls["SetQuota"] += 1
        self._require_admin(request.actor_user_id, "set quotas")
        quota = request.quota
        resource = quota.resource.strip()
        if quota.limit < 0:
            raise InvalidRequest("limit must be 0 or more", param="limit", code="invalid_limit")
        gpu_type = resource.removeprefix("gpu:") if resource.startswith("gpu:") else None
        if resource not in ("tokens_per_day", "storage_bytes") and not (
            gpu_type and gpu_type == gpu_type.strip()
        ):
            raise InvalidRequest(
                'resource must be "tokens_per_day", "storage_bytes" or "gpu:<type>"',
                param="resource",
                code="invalid_resource",
            )
        self._require_user(quota.user_id)
        self.quotas.setdefault(quota.user_id, {})[resource] = quota.limit
        return auth_pb2.Quota(user_id=quota.user_id, resource=resource, limit=quota.limit)

    async def ListQuotas(
        self, request: auth_pb2.ListQuotasRequest, context: object
    ) -> auth_pb2.ListQuotasResponse:
        self.calls["ListQuotas"] += 1
        mine = self.quotas.get(request.user_id, {})
        return auth_pb2.ListQuotasResponse(
            quotas=[
                auth_pb2.Quota(user_id=request.user_id, resource=r, limit=limit)
                for r, limit in sorted(mine.items())
            ]
        )

    async def GetQuotaStatus(
        self, request: auth_pb2.GetQuotaStatusRequest, context: object
    ) -> auth_pb2.GetQuotaStatusResponse:
        self.calls["GetQuotaStatus"] += 1
        statuses = []
        for resource, limit in sorted(self.quotas.get(request.user_id, {}).items()):
            status = auth_pb2.QuotaStatus(resource=resource, limit=limit, used=0)
            if resource == "tokens_per_day":
                status.used = self.tokens_today[request.user_id]
                status.resets_at.FromDatetime(_next_utc_midnight(datetime.now(UTC)))
            statuses.append(status)
        return auth_pb2.GetQuotaStatusResponse(quotas=statuses)

    async def GetUsage(self, request: auth_pb2.GetUsageRequest, context: object) -> auth_pb2.GetUsageResponse:
        self.calls["GetUsage"] += 1
        if not request.HasField("start"):
            raise InvalidRequest("give the start of the period", param="from", code="missing_from")
        if not request.HasField("end"):
            raise InvalidRequest("give the end of the period", param="to", code="missing_to")
        start, end = request.start.ToDatetime(UTC), request.end.ToDatetime(UTC)
        if end <= start:
            raise InvalidRequest(
                "the end of the period must be after its start", param="to", code="invalid_period"
            )
        if end - start > MAX_PERIOD:
            raise InvalidRequest("the period must be at most 366 days", param="to", code="period_too_long")
        grouping = request.group_by or "day"
        if grouping not in GROUPINGS:
            raise InvalidRequest(
                f"group_by must be one of {', '.join(GROUPINGS)}", param="group_by", code="invalid_group_by"
            )
        user_id = request.user_id
        if grouping == "user" or not user_id or user_id != request.actor_user_id:
            self._require_admin(request.actor_user_id, "see the usage of other users")
            if user_id:
                self._require_user(user_id)
        lines: dict[str, auth_pb2.UsageLine] = {}
        total = auth_pb2.UsageLine()
        for record in self.usage:
            if (user_id and record.user_id != user_id) or not start <= record.at < end:
                continue
            group = {
                "day": record.at.date().isoformat(),
                "model": record.model,
                "gpu_type": record.gpu_type,
                "key": record.key_id,
                "user": record.user_id,
            }[grouping]
            for line in (lines.setdefault(group, auth_pb2.UsageLine(group=group)), total):
                line.gpu_seconds += record.gpu_seconds
                line.requests += record.requests
                line.input_tokens += record.input_tokens
                line.output_tokens += record.output_tokens
                line.cost_micros += record.cost_micros
        return auth_pb2.GetUsageResponse(
            lines=[lines[g] for g in sorted(lines)], total=total, currency=CURRENCY
        )

    async def GetBalance(self, request: auth_pb2.GetBalanceRequest, context: object) -> auth_pb2.Balance:
        self.calls["GetBalance"] += 1
        self._require_user(request.user_id)
        return self._balance_msg(request.user_id)

    async def AddCredit(self, request: auth_pb2.AddCreditRequest, context: object) -> auth_pb2.Balance:
        self.calls["AddCredit"] += 1
        self._require_admin(request.actor_user_id, "add credit")
        if request.amount_micros <= 0:
            raise InvalidRequest("amount must be more than 0", param="amount", code="invalid_amount")
        self._require_user(request.user_id)
        self.credits[request.user_id] += request.amount_micros
        self.last_credit_note = request.note
        return self._balance_msg(request.user_id)

    async def GetPrices(self, request: auth_pb2.GetPricesRequest, context: object) -> auth_pb2.Prices:
        self.calls["GetPrices"] += 1
        return self._prices_msg()

    async def SetPrices(self, request: auth_pb2.SetPricesRequest, context: object) -> auth_pb2.Prices:
        self.calls["SetPrices"] += 1
        self._require_admin(request.actor_user_id, "set prices")
        for price in request.prices:
            if price.kind not in PRICE_KINDS:
                raise InvalidRequest(
                    f"kind must be one of {', '.join(PRICE_KINDS)}", param="kind", code="invalid_kind"
                )
            if not 1 <= len(price.name.strip()) <= 100:
                raise InvalidRequest("name must be 1 to 100 characters", param="name", code="invalid_name")
            if price.price_micros < 0:
                raise InvalidRequest("price must be 0 or more", param="price", code="invalid_price")
        for price in request.prices:
            self.prices[(price.kind, price.name.strip())] = price.price_micros
        return self._prices_msg()


@dataclass
class RunningAuth:
    servicer: AuthContractDouble
    server: grpc.aio.Server
    address: str

    async def stop(self) -> None:
        await self.server.stop(grace=None)


async def start_auth_double(port: int | None = None) -> RunningAuth:
    port = port or free_port()
    servicer = AuthContractDouble()
    server, _ = make_server(port)
    auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server)
    await server.start()
    return RunningAuth(servicer=servicer, server=server, address=f"127.0.0.1:{port}")
