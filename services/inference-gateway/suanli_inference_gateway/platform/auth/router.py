"""/api/v1/auth/*: adapters from HTTP to the auth service; sign-in attempts are rate limited."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, status

from suanli_inference_gateway.authentication.dependency import require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.dependencies import gateway_deps
from suanli_inference_gateway.platform.auth.protocol import (
    EmailCodeRequest,
    EmailCodeResponse,
    LoginRequest,
    PrincipalObject,
    SignUpRequest,
    TokenResponse,
    UserObject,
)

router = APIRouter(prefix="/auth", tags=["auth"])


def _client_ip(request: Request) -> str:
    # uvicorn already replaced it with X-Forwarded-For's when the proxy is trusted.
    return request.client.host if request.client else "unknown"


@router.post("/signup", status_code=status.HTTP_201_CREATED, response_model=UserObject)
async def sign_up(body: SignUpRequest, request: Request) -> UserObject:
    user = await gateway_deps(request).auth.sign_up(body.email, body.password)
    return UserObject.of(user)


@router.post("/login", response_model=TokenResponse)
async def login(body: LoginRequest, request: Request) -> TokenResponse:
    deps = gateway_deps(request)
    deps.signin_limiter.check(_client_ip(request), body.email)
    result = await deps.auth.login(body.email, password=body.password, code=body.code)
    return TokenResponse(access_token=result.access_token, expires_in=result.expires_in)


@router.post("/email-code", status_code=status.HTTP_202_ACCEPTED, response_model=EmailCodeResponse)
async def request_email_code(body: EmailCodeRequest, request: Request) -> EmailCodeResponse:
    deps = gateway_deps(request)
    deps.signin_limiter.check(_client_ip(request), body.email)
    return EmailCodeResponse(expires_in=await deps.auth.request_email_code(body.email))


@router.get("/me", response_model=PrincipalObject)
async def me(principal: Principal = Depends(require_principal)) -> PrincipalObject:
    return PrincipalObject.of(principal)
