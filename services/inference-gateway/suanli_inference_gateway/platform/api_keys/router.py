"""/api/v1/api-keys: the caller's keys, through the auth service."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, status

from suanli_inference_gateway.authentication.dependency import require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.dependencies import gateway_deps
from suanli_inference_gateway.platform.api_keys.protocol import (
    ApiKeyList,
    ApiKeyObject,
    CreateApiKeyRequest,
    CreatedApiKeyObject,
)

router = APIRouter(prefix="/api-keys", tags=["api-keys"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CreatedApiKeyObject)
async def create_api_key(
    body: CreateApiKeyRequest, request: Request, principal: Principal = Depends(require_principal)
) -> CreatedApiKeyObject:
    created = await gateway_deps(request).auth.create_api_key(principal.user_id, body.name)
    return CreatedApiKeyObject.of(created)


@router.get("", response_model=ApiKeyList)
async def list_api_keys(request: Request, principal: Principal = Depends(require_principal)) -> ApiKeyList:
    keys = await gateway_deps(request).auth.list_api_keys(principal.user_id)
    return ApiKeyList(data=[ApiKeyObject.of(key) for key in keys])


@router.delete("/{key_id}", response_model=ApiKeyObject)
async def revoke_api_key(
    key_id: str, request: Request, principal: Principal = Depends(require_principal)
) -> ApiKeyObject:
    deps = gateway_deps(request)
    revoked = await deps.auth.revoke_api_key(principal.user_id, key_id)
    # This instance forgets the key now; the others when the key.revoked event reaches them.
    deps.authenticator.key_cache.invalidate(key_prefix=revoked.prefix, key_id=revoked.id)
    return ApiKeyObject.of(revoked)
