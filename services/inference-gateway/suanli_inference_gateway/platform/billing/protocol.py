"""Wire models of /api/v1/balance, /api/v1/prices and their admin routes. Money is in whole
currency units here (auth keeps millionths)."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, Field

from suanli_inference_gateway.clients.auth import Balance, Price, PriceList
from suanli_inference_gateway.platform.protocol import RequestModel, currency_units, micros_of

# Whole units whose micros, summed over years of credits or of usage at the highest price, still
# fit auth's int64 (9.2e18 micros).
MAX_AMOUNT = 1_000_000_000
MAX_PRICE = 1_000_000  # auth's bound
MAX_NOTE = 500  # auth's bound
MAX_PRICE_NAME = 100  # auth's bound


class PriceKind(enum.StrEnum):
    gpu_hour = "gpu_hour"
    input_tokens = "input_tokens"
    output_tokens = "output_tokens"


class BalanceObject(BaseModel):
    object: Literal["balance"] = "balance"
    user_id: str
    credits: float = Field(description="All credit an admin gave")
    charges: float = Field(description="All usage so far, running work included")
    balance: float = Field(description="credits - charges")
    currency: str

    @classmethod
    def of(cls, balance: Balance) -> BalanceObject:
        return cls(
            user_id=balance.user_id,
            credits=currency_units(balance.credits_micros),
            charges=currency_units(balance.charges_micros),
            balance=currency_units(balance.balance_micros),
            currency=balance.currency,
        )


class AddCreditRequest(RequestModel):
    # strict: "10" (a string) is not a number here, and neither is true.
    amount: float = Field(
        gt=0, le=MAX_AMOUNT, strict=True, allow_inf_nan=False, description="In currency units, more than 0"
    )
    note: str = Field("", max_length=MAX_NOTE, description="Why (kept with the credit)")


class PriceObject(BaseModel):
    kind: PriceKind = Field(
        description="gpu_hour: per GPU-hour of a GPU type; input_tokens and output_tokens: per "
        "million tokens of a model"
    )
    name: str = Field(
        min_length=1, max_length=MAX_PRICE_NAME, description='The GPU type or the model; "*": every other one'
    )
    price: float = Field(
        ge=0, le=MAX_PRICE, strict=True, allow_inf_nan=False, description="In currency units, 0 or more"
    )

    @classmethod
    def of(cls, price: Price) -> PriceObject:
        return cls(kind=PriceKind(price.kind), name=price.name, price=currency_units(price.price_micros))

    def to_price(self) -> Price:
        return Price(kind=self.kind.value, name=self.name.strip(), price_micros=micros_of(self.price))


class PriceListObject(BaseModel):
    object: Literal["list"] = "list"
    currency: str
    data: list[PriceObject]

    @classmethod
    def of(cls, prices: PriceList) -> PriceListObject:
        return cls(currency=prices.currency, data=[PriceObject.of(p) for p in prices.prices])


class SetPricesRequest(RequestModel):
    prices: list[PriceObject] = Field(
        min_length=1, description="Each replaces the price of its (kind, name); the others stay"
    )
