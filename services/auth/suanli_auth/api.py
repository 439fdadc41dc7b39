"""The AuthService gRPC servicer: protobuf in, one service call, protobuf out. Domain errors
propagate as `SuanliError` and are mapped to statuses by `DomainErrorInterceptor`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeAlias

import grpc

from suanli_auth.domain import (
    ApiKey,
    Balance,
    PriceChange,
    PriceList,
    Principal,
    Quota,
    QuotaStatus,
    Role,
    UsageLine,
    User,
)
from suanli_auth.metering import Metering
from suanli_auth.service import AuthService
from suanli_common.errors import InvalidRequest
from suanli_common.proto.suanli.v1 import auth_pb2, auth_pb2_grpc

Context: TypeAlias = grpc.aio.ServicerContext

_ROLES = {Role.user: auth_pb2.ROLE_USER, Role.admin: auth_pb2.ROLE_ADMIN}


def _timestamp(message: Any, field: str, value: datetime | None) -> None:
    if value is not None:
        getattr(message, field).FromDatetime(value)


def user_pb(user: User) -> auth_pb2.User:
    message = auth_pb2.User(id=user.id, email=user.email, role=_ROLES[user.role])
    _timestamp(message, "created_at", user.created_at)
    return message


def api_key_pb(key: ApiKey) -> auth_pb2.ApiKey:
    message = auth_pb2.ApiKey(id=key.id, name=key.name, prefix=key.prefix)
    _timestamp(message, "created_at", key.created_at)
    _timestamp(message, "last_used_at", key.last_used_at)
    _timestamp(message, "revoked_at", key.revoked_at)
    return message


def principal_pb(principal: Principal) -> auth_pb2.Principal:
    return auth_pb2.Principal(
        user_id=principal.user_id, email=principal.email, role=_ROLES[principal.role], key_id=principal.key_id
    )


def quota_pb(quota: Quota) -> auth_pb2.Quota:
    return auth_pb2.Quota(user_id=quota.user_id, resource=quota.resource, limit=quota.limit)


def _datetime(message: Any, field: str) -> datetime | None:
    return getattr(message, field).ToDatetime(UTC) if message.HasField(field) else None


def quota_status_pb(status: QuotaStatus) -> auth_pb2.QuotaStatus:
    message = auth_pb2.QuotaStatus(resource=status.resource, limit=status.limit, used=status.used)
    _timestamp(message, "resets_at", status.resets_at)
    return message


def usage_line_pb(line: UsageLine) -> auth_pb2.UsageLine:
    return auth_pb2.UsageLine(
        group=line.group,
        gpu_seconds=line.gpu_seconds,
        requests=line.requests,
        input_tokens=line.input_tokens,
        output_tokens=line.output_tokens,
        cost_micros=line.cost_micros,
    )


def balance_pb(balance: Balance) -> auth_pb2.Balance:
    return auth_pb2.Balance(
        user_id=balance.user_id,
        credits_micros=balance.credits_micros,
        charges_micros=balance.charges_micros,
        balance_micros=balance.balance_micros,
        currency=balance.currency,
    )


def prices_pb(prices: PriceList) -> auth_pb2.Prices:
    return auth_pb2.Prices(
        prices=[
            auth_pb2.Price(kind=p.kind.value, name=p.name, price_micros=p.price_micros) for p in prices.prices
        ],
        currency=prices.currency,
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, service: AuthService, metering: Metering) -> None:
        self._service = service
        self._metering = metering

    async def SignUp(self, request: auth_pb2.SignUpRequest, context: Context) -> auth_pb2.User:
        return user_pb(await self._service.sign_up(request.email, request.password))

    async def Login(self, request: auth_pb2.LoginRequest, context: Context) -> auth_pb2.LoginResponse:
        match request.WhichOneof("secret"):
            case "password":
                result = await self._service.login_with_password(request.email, request.password)
            case "code":
                result = await self._service.login_with_code(request.email, request.code)
            case _:
                raise InvalidRequest("give a password or a code", param="password", code="missing_secret")
        return auth_pb2.LoginResponse(
            access_token=result.access_token.token,
            token_type="bearer",
            expires_in=result.access_token.expires_in,
            user=user_pb(result.user),
        )

    async def RequestEmailCode(
        self, request: auth_pb2.RequestEmailCodeRequest, context: Context
    ) -> auth_pb2.RequestEmailCodeResponse:
        expires_in = await self._service.request_email_code(request.email)
        return auth_pb2.RequestEmailCodeResponse(expires_in=expires_in)

    async def Authenticate(
        self, request: auth_pb2.AuthenticateRequest, context: Context
    ) -> auth_pb2.Principal:
        return principal_pb(await self._service.authenticate(request.credential))

    async def GetSigningKeys(
        self, request: auth_pb2.GetSigningKeysRequest, context: Context
    ) -> auth_pb2.GetSigningKeysResponse:
        keys, issuer = self._service.signing_keys()
        return auth_pb2.GetSigningKeysResponse(
            keys=[
                auth_pb2.SigningKey(kid=k.kid, algorithm=k.algorithm, public_key_pem=k.public_key_pem)
                for k in keys
            ],
            issuer=issuer,
        )

    async def GetUser(self, request: auth_pb2.GetUserRequest, context: Context) -> auth_pb2.User:
        return user_pb(await self._service.get_user(request.user_id))

    async def CreateApiKey(
        self, request: auth_pb2.CreateApiKeyRequest, context: Context
    ) -> auth_pb2.CreateApiKeyResponse:
        created = await self._service.create_api_key(request.user_id, request.name)
        return auth_pb2.CreateApiKeyResponse(api_key=api_key_pb(created.api_key), key=created.secret)

    async def ListApiKeys(
        self, request: auth_pb2.ListApiKeysRequest, context: Context
    ) -> auth_pb2.ListApiKeysResponse:
        keys = await self._service.list_api_keys(request.user_id)
        return auth_pb2.ListApiKeysResponse(api_keys=[api_key_pb(k) for k in keys])

    async def RevokeApiKey(self, request: auth_pb2.RevokeApiKeyRequest, context: Context) -> auth_pb2.ApiKey:
        return api_key_pb(await self._service.revoke_api_key(request.user_id, request.key_id))

    async def SetQuota(self, request: auth_pb2.SetQuotaRequest, context: Context) -> auth_pb2.Quota:
        quota = request.quota
        return quota_pb(
            await self._service.set_quota(request.actor_user_id, quota.user_id, quota.resource, quota.limit)
        )

    async def ListQuotas(
        self, request: auth_pb2.ListQuotasRequest, context: Context
    ) -> auth_pb2.ListQuotasResponse:
        quotas = await self._service.list_quotas(request.user_id)
        return auth_pb2.ListQuotasResponse(quotas=[quota_pb(q) for q in quotas])

    async def GetQuotaStatus(
        self, request: auth_pb2.GetQuotaStatusRequest, context: Context
    ) -> auth_pb2.GetQuotaStatusResponse:
        statuses = await self._metering.reports.quota_status(request.user_id)
        return auth_pb2.GetQuotaStatusResponse(quotas=[quota_status_pb(s) for s in statuses])

    # metering

    async def GetUsage(
        self, request: auth_pb2.GetUsageRequest, context: Context
    ) -> auth_pb2.GetUsageResponse:
        report = await self._metering.reports.usage(
            request.actor_user_id,
            request.user_id,
            _datetime(request, "start"),
            _datetime(request, "end"),
            request.group_by,
        )
        return auth_pb2.GetUsageResponse(
            lines=[usage_line_pb(line) for line in report.lines],
            total=usage_line_pb(report.total),
            currency=report.currency,
        )

    async def GetBalance(self, request: auth_pb2.GetBalanceRequest, context: Context) -> auth_pb2.Balance:
        return balance_pb(await self._metering.balances.balance(request.user_id))

    async def AddCredit(self, request: auth_pb2.AddCreditRequest, context: Context) -> auth_pb2.Balance:
        balance = await self._metering.balances.add_credit(
            request.actor_user_id, request.user_id, request.amount_micros, request.note, request.request_id
        )
        return balance_pb(balance)

    async def GetPrices(self, request: auth_pb2.GetPricesRequest, context: Context) -> auth_pb2.Prices:
        return prices_pb(await self._metering.prices.current())

    async def SetPrices(self, request: auth_pb2.SetPricesRequest, context: Context) -> auth_pb2.Prices:
        changes = [PriceChange(p.kind, p.name, p.price_micros) for p in request.prices]
        return prices_pb(await self._metering.prices.set(request.actor_user_id, changes))
