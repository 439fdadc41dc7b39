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
IDEMPOTENT_METHODS = ("Authenticate", "GetSigningKeys", "GetUser", "ListApiKeys", "ListQuotas")


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
