"""The FastAPI dependencies that authenticate a request: `Depends(require_principal)` gives the
`Principal`, `Depends(require_admin)` the same for an admin only (403 for anyone else)."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from suanli_common.errors import PermissionDenied, Unauthenticated
from suanli_common.telemetry import annotate
from suanli_inference_gateway.authentication.authenticator import Authenticator
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.dependencies import gateway_deps

MISSING_CREDENTIALS = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can create an API key in the "
    "console or with POST /api/v1/api-keys."
)

# auto_error=False: a missing header must become our error object, not FastAPI's 403.
bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="An API key (sk-...) or an access token"
)


async def require_principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
) -> Principal:
    principal = await authenticate_bearer(
        gateway_deps(request).authenticator, credentials.credentials if credentials else None
    )
    request.state.principal = principal
    annotate({"enduser.id": principal.user_id, "suanli.api_key.id": principal.key_id})
    return principal


def bearer_credential(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer ...` header, as `HTTPBearer` reads it; None
    for no header or another scheme. For routes served outside FastAPI (the inference edge)."""
    scheme, _, credential = (authorization or "").partition(" ")
    if not scheme or not credential or scheme.lower() != "bearer":
        return None
    return credential


async def authenticate_bearer(authenticator: Authenticator, credential: str | None) -> Principal:
    if credential is None or not credential.strip():
        raise Unauthenticated(MISSING_CREDENTIALS, code="missing_credentials")
    return await authenticator.authenticate(credential.strip())


async def require_admin(principal: Principal = Depends(require_principal)) -> Principal:
    # The auth service checks the actor again on every admin call; this refuses early and also
    # covers the admin reads whose answer would otherwise depend on the arguments.
    if principal.role != "admin":
        raise PermissionDenied("only an admin can use this route", code="admin_required")
    return principal
