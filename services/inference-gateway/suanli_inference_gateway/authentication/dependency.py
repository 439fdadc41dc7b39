"""The FastAPI dependencies that authenticate a request: `Depends(require_principal)` gives the
`Principal`, `Depends(require_admin)` the same for an admin only (403 for anyone else)."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from suanli_common.errors import PermissionDenied, Unauthenticated
from suanli_common.telemetry import annotate
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
    if credentials is None or not credentials.credentials.strip():
        raise Unauthenticated(MISSING_CREDENTIALS, code="missing_credentials")
    principal = await gateway_deps(request).authenticator.authenticate(credentials.credentials.strip())
    request.state.principal = principal
    annotate({"enduser.id": principal.user_id, "suanli.api_key.id": principal.key_id})
    return principal


async def require_admin(principal: Principal = Depends(require_principal)) -> Principal:
    # The auth service checks the actor again on every admin call; this refuses early and also
    # covers the admin reads whose answer would otherwise depend on the arguments.
    if principal.role != "admin":
        raise PermissionDenied("only an admin can use this route", code="admin_required")
    return principal
