"""The price list: what a GPU-hour of a type and a million tokens of a model cost. Seeded from the
settings on the first start; an admin changes it afterwards. Usage is priced when it is recorded
(tokens) or when it begins (GPU intervals), so a change applies to what comes after it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError

from suanli_auth.admins import require_admin
from suanli_auth.domain import Price, PriceChange, PriceKind, PriceList
from suanli_auth.metering.repository import MeteringRepository
from suanli_auth.repository import AuthRepository
from suanli_common.db import Database
from suanli_common.errors import InvalidRequest
from suanli_common.logging import get_logger

log = get_logger(__name__)

MAX_PRICE_NAME = 100
# A million currency units per GPU-hour or per million tokens: far above any real price, and low
# enough that no sum of costs overflows the int64 micros they are kept in.
MAX_PRICE_MICROS = 10**12


def checked_price(change: PriceChange) -> Price:
    try:
        kind = PriceKind(change.kind)
    except ValueError:
        raise InvalidRequest(
            f"kind must be one of {', '.join(k.value for k in PriceKind)}", param="kind", code="invalid_kind"
        ) from None
    name = change.name.strip()
    if not 1 <= len(name) <= MAX_PRICE_NAME:
        raise InvalidRequest(
            f"name must be 1 to {MAX_PRICE_NAME} characters", param="name", code="invalid_name"
        )
    if not 0 <= change.price_micros <= MAX_PRICE_MICROS:
        raise InvalidRequest(
            f"price must be 0 to {MAX_PRICE_MICROS // 10**6} currency units",
            param="price",
            code="invalid_price",
        )
    return Price(kind=kind, name=name, price_micros=change.price_micros)


class PriceBook:
    def __init__(self, db: Database, currency: str) -> None:
        self._db = db
        self._currency = currency

    async def seed(self, prices: Sequence[Price]) -> bool:
        """Writes `prices` if the table is empty (the first start); False when it was not."""
        if not prices:
            return False
        try:
            async with self._db.session() as session:
                repo = MeteringRepository(session)
                if await repo.has_prices():
                    return False
                for price in prices:
                    await repo.put_price(price.kind, price.name, price.price_micros)
        except IntegrityError:  # another instance seeded it at the same moment
            return False
        log.info("prices seeded", prices=len(prices))
        return True

    async def current(self) -> PriceList:
        async with self._db.session() as session:
            rows = await MeteringRepository(session).prices()
            prices = [Price(PriceKind(r.kind), r.name, r.price_micros) for r in rows]
        return PriceList(prices=prices, currency=self._currency)

    async def set(self, actor_user_id: str, changes: Sequence[PriceChange]) -> PriceList:
        """Replaces the price of each (kind, name) given; the others stay."""
        async with self._db.session() as session:
            await require_admin(AuthRepository(session), actor_user_id, "set prices")
            prices = [checked_price(change) for change in changes]
            repo = MeteringRepository(session)
            for price in prices:
                await repo.put_price(price.kind, price.name, price.price_micros)
        for price in prices:
            log.info(
                "price set",
                actor_user_id=actor_user_id,
                kind=price.kind.value,
                name=price.name,
                price_micros=price.price_micros,
            )
        return await self.current()
