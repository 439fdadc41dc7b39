"""Queries against the auth tables, within the caller's unit of work (one `AsyncSession`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from suanli_auth.models import ApiKeyRow, EmailCodeRow, QuotaRow, UserRow


class DuplicateEmail(Exception):
    """The e-mail already has an account (raised on the unique index, so it also catches races)."""


class AuthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    # users

    async def get_user(self, user_id: str) -> UserRow | None:
        return await self._session.get(UserRow, user_id)

    async def get_user_by_email(self, email: str) -> UserRow | None:
        return await self._session.scalar(select(UserRow).where(UserRow.email == email))

    async def add_user(self, user: UserRow) -> None:
        # Flushed at once, so the unique index catches a concurrent sign-up with the same e-mail
        # here (the unit of work is then rolled back as a whole).
        self._session.add(user)
        try:
            await self._session.flush()
        except IntegrityError:
            raise DuplicateEmail(user.email) from None

    # API keys

    async def add_api_key(self, key: ApiKeyRow) -> None:
        self._session.add(key)
        await self._session.flush()

    async def get_api_key(self, user_id: str, key_id: str) -> ApiKeyRow | None:
        return await self._session.scalar(
            select(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.user_id == user_id)
        )

    async def find_api_key_by_hash(self, key_hash: str) -> tuple[ApiKeyRow, UserRow] | None:
        row = (
            await self._session.execute(
                select(ApiKeyRow, UserRow)
                .join(UserRow, UserRow.id == ApiKeyRow.user_id)
                .where(ApiKeyRow.key_hash == key_hash)
            )
        ).first()
        return (row[0], row[1]) if row else None

    async def list_api_keys(self, user_id: str) -> Sequence[ApiKeyRow]:
        return (
            await self._session.scalars(
                select(ApiKeyRow)
                .where(ApiKeyRow.user_id == user_id)
                .order_by(ApiKeyRow.created_at.desc(), ApiKeyRow.id.desc())
            )
        ).all()

    async def touch_api_key(self, key_id: str, now: datetime) -> None:
        await self._session.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=now))

    # e-mail codes

    async def replace_email_codes(self, code: EmailCodeRow) -> None:
        """Stores a new code for an e-mail, dropping every earlier one (only the latest is valid)."""
        await self._session.execute(delete(EmailCodeRow).where(EmailCodeRow.email == code.email))
        self._session.add(code)
        await self._session.flush()

    async def latest_email_code(self, email: str) -> EmailCodeRow | None:
        return await self._session.scalar(
            select(EmailCodeRow)
            .where(EmailCodeRow.email == email)
            .order_by(EmailCodeRow.created_at.desc(), EmailCodeRow.id.desc())
            .limit(1)
        )

    async def count_failed_attempt(self, code_id: str) -> None:
        # An increment in SQL, so concurrent wrong guesses are all counted.
        await self._session.execute(
            update(EmailCodeRow).where(EmailCodeRow.id == code_id).values(attempts=EmailCodeRow.attempts + 1)
        )

    async def consume_email_code(self, code_id: str, now: datetime) -> bool:
        """Marks a code used; False when a concurrent sign-in consumed it first."""
        result = await self._session.execute(
            update(EmailCodeRow)
            .where(EmailCodeRow.id == code_id, EmailCodeRow.consumed_at.is_(None))
            .values(consumed_at=now)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    # quotas

    async def upsert_quota(self, user_id: str, resource: str, limit: int) -> QuotaRow:
        row = await self._session.get(QuotaRow, (user_id, resource))
        if row is None:
            row = QuotaRow(user_id=user_id, resource=resource, limit=limit)
            self._session.add(row)
        else:
            row.limit = limit
        await self._session.flush()
        return row

    async def list_quotas(self, user_id: str) -> Sequence[QuotaRow]:
        return (
            await self._session.scalars(
                select(QuotaRow).where(QuotaRow.user_id == user_id).order_by(QuotaRow.resource)
            )
        ).all()
