"""Credits an admin gives and the balance they leave: credits less the charges of all usage so
far, work still running counted up to now."""

from __future__ import annotations

import hashlib

from sqlalchemy.exc import IntegrityError

from suanli_auth.admins import require_admin
from suanli_auth.domain import Balance
from suanli_auth.metering.intervals import gpu_cost_micros
from suanli_auth.metering.repository import MeteringRepository
from suanli_auth.models import CreditRow
from suanli_auth.repository import AuthRepository
from suanli_auth.service import Clock, utc_now
from suanli_common.db import Database
from suanli_common.errors import Conflict, InvalidRequest, NotFound
from suanli_common.ids import new_id
from suanli_common.logging import get_logger

log = get_logger(__name__)

MAX_NOTE = 500


def _credit_id(actor_user_id: str, request_id: str) -> str:
    """The id a credit given under an idempotency key always gets: a retry finds it."""
    return "credit_" + hashlib.sha256(f"{actor_user_id}\n{request_id}".encode()).hexdigest()[:32]


class Balances:
    def __init__(self, db: Database, currency: str, clock: Clock = utc_now) -> None:
        self._db = db
        self._currency = currency
        self._clock = clock

    async def balance(self, user_id: str) -> Balance:
        async with self._db.session() as session:
            if await AuthRepository(session).get_user(user_id) is None:
                raise NotFound(f"no user {user_id!r}", param="user_id", code="user_not_found")
            return await self._balance(MeteringRepository(session), user_id)

    async def add_credit(
        self, actor_user_id: str, user_id: str, amount_micros: int, note: str, request_id: str = ""
    ) -> Balance:
        """Adds a credit; with a `request_id` (the caller's idempotency key) only once: a retry
        answers the balance, a different credit under the same key is a conflict."""
        try:
            return await self._add_credit(actor_user_id, user_id, amount_micros, note.strip(), request_id)
        except IntegrityError:  # a concurrent retry inserted it first: now it is found
            return await self._add_credit(actor_user_id, user_id, amount_micros, note.strip(), request_id)

    async def _add_credit(
        self, actor_user_id: str, user_id: str, amount_micros: int, note: str, request_id: str
    ) -> Balance:
        credit_id = _credit_id(actor_user_id, request_id) if request_id else new_id("credit")
        async with self._db.session() as session:
            auth = AuthRepository(session)
            await require_admin(auth, actor_user_id, "add credit")
            if amount_micros <= 0:
                raise InvalidRequest("amount must be more than 0", param="amount", code="invalid_amount")
            if len(note) > MAX_NOTE:
                raise InvalidRequest(
                    f"note must be at most {MAX_NOTE} characters", param="note", code="invalid_note"
                )
            if await auth.get_user(user_id) is None:
                raise NotFound(f"no user {user_id!r}", param="user_id", code="user_not_found")
            repo = MeteringRepository(session)
            if request_id and (earlier := await session.get(CreditRow, credit_id)) is not None:
                if (earlier.user_id, earlier.amount_micros) != (user_id, amount_micros):
                    raise Conflict(
                        "this Idempotency-Key was used for another credit",
                        param="Idempotency-Key",
                        code="idempotency_key_reused",
                    )
                return await self._balance(repo, user_id)
            await repo.add_credit(
                CreditRow(
                    id=credit_id,
                    user_id=user_id,
                    amount_micros=amount_micros,
                    note=note,
                    actor_user_id=actor_user_id,
                    created_at=self._clock(),
                )
            )
            balance = await self._balance(repo, user_id)
        log.info("credit added", actor_user_id=actor_user_id, user_id=user_id, amount_micros=amount_micros)
        return balance

    async def _balance(self, repo: MeteringRepository, user_id: str) -> Balance:
        now = self._clock()
        charges = await repo.token_charges(user_id)
        for interval in await repo.intervals(user_id):
            charges += gpu_cost_micros(
                (interval.ended_at or now) - interval.started_at,
                interval.hold.gpus,
                interval.price_micros_per_hour,
            )
        return Balance(
            user_id=user_id,
            credits_micros=await repo.credits_total(user_id),
            charges_micros=charges,
            currency=self._currency,
        )
