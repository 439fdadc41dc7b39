"""The AuthService gRPC servicer: protobuf in, one service call, protobuf out. Domain errors
propagate as `SuanliError` and are mapped to statuses by `DomainErrorInterceptor`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

import grpc

from suanli_auth.domain import ApiKey, Principal, Quota, Role, User
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


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, service: AuthService) -> None:
        self._service = service

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
