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


@dataclass(frozen=True, slots=True)
class PublicSigningKey:
    kid: str
    algorithm: str
    public_key_pem: str
