"""Wire models of /api/v1/auth/*."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, EmailStr, Field, model_validator

from suanli_inference_gateway.clients.auth import Principal, User
from suanli_inference_gateway.platform.protocol import RequestModel, unix_seconds


class SignUpRequest(RequestModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024, description="The password policy is auth's")


class LoginRequest(RequestModel):
    """Either a password or a one-time code from POST /api/v1/auth/email-code, not both."""

    email: EmailStr
    password: str | None = Field(None, max_length=1024)
    code: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _one_secret(self) -> LoginRequest:
        if (self.password is None) == (self.code is None):
            raise ValueError("give exactly one of 'password' and 'code'")
        return self


class EmailCodeRequest(RequestModel):
    email: EmailStr


class UserObject(BaseModel):
    id: str
    object: Literal["user"] = "user"
    email: str
    role: str
    created_at: int

    @classmethod
    def of(cls, user: User) -> UserObject:
        return cls(id=user.id, email=user.email, role=user.role, created_at=unix_seconds(user.created_at))


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires")


class EmailCodeResponse(BaseModel):
    expires_in: int = Field(
        description="Seconds the code stays valid (the same whether or not the account exists)"
    )


class PrincipalObject(BaseModel):
    object: Literal["principal"] = "principal"
    user_id: str
    email: str
    role: str
    key_id: str | None = Field(None, description="The API key used, if the caller used one")

    @classmethod
    def of(cls, principal: Principal) -> PrincipalObject:
        return cls(
            user_id=principal.user_id, email=principal.email, role=principal.role, key_id=principal.key_id
        )
