"""An in-process implementation of the `suanli.v1.AuthService` contract, for the gateway's unit
tests only (the real auth service across processes is covered by tests/integration).

It keeps users and keys in memory, signs real EdDSA access tokens, raises the same domain
errors auth raises, and counts the calls it receives so tests can see what reached it.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from suanli_common.errors import Conflict, InvalidRequest, NotFound, Unauthenticated
from suanli_common.grpc import make_server
from suanli_common.ids import new_id
from suanli_common.proto.suanli.v1 import auth_pb2, auth_pb2_grpc
from suanli_common.testing import free_port

ISSUER = "suanli-auth"
TOKEN_TTL_S = 3600


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
