"""/api/v1/balance and /api/v1/prices for every user; adding credit and setting prices for admins."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Request

from suanli_common.errors import InvalidRequest
from suanli_inference_gateway.authentication.dependency import require_admin, require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.dependencies import gateway_deps
from suanli_inference_gateway.platform.billing.protocol import (
    AddCreditRequest,
    BalanceObject,
    PriceKind,
    PriceListObject,
    SetPricesRequest,
)
from suanli_inference_gateway.platform.gpus.inventory import require_known_gpu_types
from suanli_inference_gateway.platform.protocol import checked_idempotency_key, micros_of

router = APIRouter(tags=["billing"])


@router.get("/balance", response_model=BalanceObject)
async def get_balance(request: Request, principal: Principal = Depends(require_principal)) -> BalanceObject:
    """The caller's credits, charges so far and what is left."""
    return BalanceObject.of(await gateway_deps(request).auth.get_balance(principal.user_id))


@router.get("/admin/users/{user_id}/balance", response_model=BalanceObject)
async def get_user_balance(
    user_id: str, request: Request, _: Principal = Depends(require_admin)
) -> BalanceObject:
    """Admins: a user's credits, charges so far and what is left."""
    return BalanceObject.of(await gateway_deps(request).auth.get_balance(user_id))


@router.post("/admin/users/{user_id}/credits", response_model=BalanceObject)
async def add_credit(
    user_id: str,
    body: AddCreditRequest,
    request: Request,
    idempotency_key: str | None = Header(
        None, description="Retrying with the same key adds nothing again and answers the balance"
    ),
    admin: Principal = Depends(require_admin),
) -> BalanceObject:
    """Admins: give a user credit; answers the user's new balance."""
    amount_micros = micros_of(body.amount)
    if amount_micros <= 0:  # a positive amount below a millionth
        raise InvalidRequest(
            "Invalid value for 'amount': at least 0.000001.", param="amount", code="invalid_value"
        )
    balance = await gateway_deps(request).auth.add_credit(
        admin.user_id, user_id, amount_micros, body.note.strip(), checked_idempotency_key(idempotency_key)
    )
    return BalanceObject.of(balance)


@router.get("/prices", response_model=PriceListObject)
async def get_prices(request: Request, _: Principal = Depends(require_principal)) -> PriceListObject:
    """The price list: per GPU-hour of each GPU type, per million input and output tokens."""
    return PriceListObject.of(await gateway_deps(request).auth.get_prices())


@router.put("/admin/prices", response_model=PriceListObject)
async def set_prices(
    body: SetPricesRequest, request: Request, admin: Principal = Depends(require_admin)
) -> PriceListObject:
    """Admins: set prices; each replaces its (kind, name), the others stay. Answers the whole list.
    Usage is priced when it happens, so a change applies to what comes after it."""
    deps = gateway_deps(request)
    gpu_types = [p.name.strip() for p in body.prices if p.kind is PriceKind.gpu_hour]
    await require_known_gpu_types(deps.scheduler, gpu_types, param="name")
    prices = await deps.auth.set_prices(admin.user_id, [p.to_price() for p in body.prices])
    return PriceListObject.of(prices)
