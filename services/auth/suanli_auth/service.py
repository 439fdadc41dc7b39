"""The auth domain: accounts, sign-in by password or e-mailed code, access tokens, API keys and
quotas. Plain async Python over the repository; errors are `suanli_common.errors` exceptions."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from email_validator import EmailNotValidError, validate_email
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession

from suanli_auth.admins import require_admin
from suanli_auth.domain import (
    ApiKey,
    CreatedApiKey,
    LoginResult,
    Principal,
    PublicSigningKey,
    Quota,
    Role,
    User,
    gpu_type_of_quota,
    is_quota_resource,
)
from suanli_auth.mailer import Mailer
from suanli_auth.models import ApiKeyRow, EmailCodeRow, UserRow
from suanli_auth.passwords import Passwords
from suanli_auth.repository import AuthRepository, DuplicateEmail
from suanli_auth.settings import AuthSettings
from suanli_auth.signing import TokenSigner
from suanli_common.db import Database
from suanli_common.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from suanli_common.ids import new_id
from suanli_common.logging import get_logger
from suanli_common.proto.suanli.v1 import events_pb2
from suanli_common.tokens import TokenVerifier, looks_like_jwt

log = get_logger(__name__)

Clock = Callable[[], datetime]
API_KEY_PREFIX = "sk-"
# last_used_at is for humans ("used 3 minutes ago"): one write a minute per key is plenty,
# and keeps authentication (on every API request) a read.
LAST_USED_RESOLUTION = timedelta(seconds=60)
EMAIL_CODE_SUBJECT = "Your Suanli sign-in code"
INCORRECT_CREDENTIALS = "incorrect email or password"
MAX_QUOTA_RESOURCE = 100
# What the scheduler, which enforces GPU quotas, stores them in (an int32 count, a 64-character type).
MAX_GPU_QUOTA = 2**31 - 1
MAX_GPU_TYPE = 64


class EventStager(Protocol):
    """Stages an event in a unit of work (`suanli_common.outbox.Outbox`)."""

    def add(self, session: AsyncSession, event_type: str, subject: str, data: Message) -> None: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


def normalize_email(email: str) -> str:
    """The canonical form an account is stored under, for sign-up and code requests."""
    try:
        result = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidRequest(f"invalid email address: {exc}", param="email", code="invalid_email") from None
    return result.normalized.lower()


def _lookup_email(email: str) -> str:
    """The form to look an account up by at sign-in, where a malformed e-mail is just unknown."""
    try:
        return normalize_email(email)
    except InvalidRequest:
        return email.strip().lower()


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _user(row: UserRow) -> User:
    return User(id=row.id, email=row.email, role=Role(row.role), created_at=row.created_at)


def _api_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


class AuthService:
    def __init__(
        self,
        db: Database,
        events: EventStager,
        passwords: Passwords,
        signer: TokenSigner,
        mailer: Mailer,
        code_secret: bytes,
        settings: AuthSettings,
        clock: Clock = utc_now,
    ) -> None:
        self._db = db
        self._events = events
        self._passwords = passwords
        self._signer = signer
        self._verifier: TokenVerifier = signer.verifier()
        self._mailer = mailer
        self._code_secret = code_secret
        self._settings = settings
        self._admin_emails = frozenset(settings.admin_emails)
        self._clock = clock

    # accounts

    async def sign_up(self, email: str, password: str) -> User:
        email = normalize_email(email)
        if len(password) < self._settings.password_min_length:
            raise InvalidRequest(
                f"password must be at least {self._settings.password_min_length} characters",
                param="password",
                code="password_too_short",
            )
        password_hash = await self._passwords.hash(password)
        async with self._db.session() as session:
            repo = AuthRepository(session)
            if await repo.get_user_by_email(email) is not None:
                raise self._email_taken()
            row = await self._create_user(session, repo, email, password_hash)
        log.info("user signed up", user_id=row.id)
        return _user(row)

    async def get_user(self, user_id: str) -> User:
        async with self._db.session() as session:
            row = await AuthRepository(session).get_user(user_id)
        if row is None:
            raise NotFound(f"no user {user_id!r}", param="user_id", code="user_not_found")
        return _user(row)

    async def _create_user(
        self, session: AsyncSession, repo: AuthRepository, email: str, password_hash: str | None
    ) -> UserRow:
        role = Role.admin if email in self._admin_emails else Role.user
        row = UserRow(
            id=new_id("user"), email=email, password_hash=password_hash, role=role, created_at=self._clock()
        )
        try:
            await repo.add_user(row)
        except DuplicateEmail:
            raise self._email_taken() from None
        self._events.add(
            session,
            "user.created",
            row.id,
            events_pb2.UserCreated(user_id=row.id, email=email, role=role.value),
        )
        return row

    @staticmethod
    def _email_taken() -> Conflict:
        return Conflict("an account with this email already exists", param="email", code="email_taken")

    # sign-in

    async def login_with_password(self, email: str, password: str) -> LoginResult:
        email = _lookup_email(email)
        async with self._db.session() as session:
            repo = AuthRepository(session)
            row = await repo.get_user_by_email(email)
            # Unknown e-mails and password-less accounts verify against a dummy hash: same
            # message, similar time, so neither tells whether an account exists.
            ok = await self._passwords.verify(row.password_hash if row else None, password)
            if row is None or row.password_hash is None or not ok:
                raise Unauthenticated(INCORRECT_CREDENTIALS, code="invalid_credentials")
            if self._passwords.needs_rehash(row.password_hash):
                row.password_hash = await self._passwords.hash(password)
            self._signed_in(session, row, "password")
        return self._login_result(row)

    async def request_email_code(self, email: str) -> int:
        """Mails a one-time code; answers the same whether or not the account exists."""
        email = normalize_email(email)
        ttl = self._settings.email_code_ttl_s
        code = f"{secrets.randbelow(1_000_000):06d}"
        now = self._clock()
        async with self._db.session() as session:
            await AuthRepository(session).replace_email_codes(
                EmailCodeRow(
                    id=new_id("code"),
                    email=email,
                    code_hmac=self._code_hmac(email, code),
                    expires_at=now + timedelta(seconds=ttl),
                    attempts=0,
                    created_at=now,
                )
            )
        # Sent after the commit: a mail must never carry a code the database does not hold.
        minutes = max(1, ttl // 60)
        body = (
            f"Your Suanli sign-in code is {code}\n\n"
            f"It expires in {minutes} minute{'s' if minutes != 1 else ''}. "
            "If you did not ask for it, ignore this mail.\n"
        )
        try:
            await self._mailer.send(email, EMAIL_CODE_SUBJECT, body)
        except OSError:
            log.warning("sending the sign-in mail failed", exc_info=True)
            raise Unavailable(
                "could not send the sign-in email; try again", code="mail_unavailable"
            ) from None
        return ttl

    async def login_with_code(self, email: str, code: str) -> LoginResult:
        email = _lookup_email(email)
        now = self._clock()
        failure: Unauthenticated | None = None
        async with self._db.session() as session:
            repo = AuthRepository(session)
            failure = await self._check_code(repo, email, code.strip(), now)
            if failure is None:
                row = await repo.get_user_by_email(email)
                if row is None:  # first code sign-in makes the account (password-less)
                    row = await self._create_user(session, repo, email, None)
                self._signed_in(session, row, "email_code")
        # Raised after the block so the counted failed attempt is committed, not rolled back.
        if failure is not None:
            raise failure
        return self._login_result(row)

    async def _check_code(
        self, repo: AuthRepository, email: str, code: str, now: datetime
    ) -> Unauthenticated | None:
        row = await repo.latest_email_code(email)
        if row is None:
            return Unauthenticated("invalid sign-in code", code="invalid_code")
        if row.consumed_at is not None:
            return Unauthenticated("this sign-in code was already used", code="code_used")
        if row.attempts >= self._settings.email_code_max_attempts:
            return Unauthenticated(
                "too many wrong attempts; request a new code", code="code_attempts_exceeded"
            )
        if row.expires_at <= now:
            return Unauthenticated("this sign-in code has expired; request a new one", code="code_expired")
        if not hmac.compare_digest(self._code_hmac(email, code), row.code_hmac):
            await repo.count_failed_attempt(row.id)
            return Unauthenticated("invalid sign-in code", code="invalid_code")
        if not await repo.consume_email_code(row.id, now):
            return Unauthenticated("this sign-in code was already used", code="code_used")
        return None

    def _code_hmac(self, email: str, code: str) -> str:
        # Keyed and bound to the e-mail: a leaked table does not give codes away by brute force.
        return hmac.new(self._code_secret, f"{email}\n{code}".encode(), hashlib.sha256).hexdigest()

    def _signed_in(self, session: AsyncSession, row: UserRow, method: str) -> None:
        self._events.add(
            session, "user.signed_in", row.id, events_pb2.UserSignedIn(user_id=row.id, method=method)
        )

    def _login_result(self, row: UserRow) -> LoginResult:
        user = _user(row)
        return LoginResult(access_token=self._signer.issue(user, self._clock()), user=user)

    # credentials

    async def authenticate(self, credential: str) -> Principal:
        credential = credential.strip()
        if credential.startswith(API_KEY_PREFIX):
            return await self._authenticate_api_key(credential)
        if looks_like_jwt(credential):
            claims = self._verifier.verify(credential)
            return Principal(user_id=claims.user_id, email=claims.email, role=Role(claims.role))
        raise Unauthenticated("missing or malformed credential", code="invalid_credential")

    async def _authenticate_api_key(self, key: str) -> Principal:
        now = self._clock()
        async with self._db.session() as session:
            repo = AuthRepository(session)
            found = await repo.find_api_key_by_hash(hash_api_key(key))
            if found is None or found[0].revoked_at is not None:
                raise Unauthenticated("invalid or revoked API key", code="invalid_api_key")
            key_row, user_row = found
            if key_row.last_used_at is None or now - key_row.last_used_at >= LAST_USED_RESOLUTION:
                await repo.touch_api_key(key_row.id, now)
        return Principal(
            user_id=user_row.id, email=user_row.email, role=Role(user_row.role), key_id=key_row.id
        )

    def signing_keys(self) -> tuple[list[PublicSigningKey], str]:
        return self._signer.public_keys(), self._signer.issuer

    # API keys

    async def create_api_key(self, user_id: str, name: str) -> CreatedApiKey:
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise InvalidRequest("name must be 1 to 100 characters", param="name", code="invalid_name")
        secret = API_KEY_PREFIX + secrets.token_urlsafe(36)
        async with self._db.session() as session:
            repo = AuthRepository(session)
            if await repo.get_user(user_id) is None:
                raise NotFound(f"no user {user_id!r}", param="user_id", code="user_not_found")
            row = ApiKeyRow(
                id=new_id("key"),
                user_id=user_id,
                name=name,
                prefix=secret[:12],
                key_hash=hash_api_key(secret),
                created_at=self._clock(),
            )
            await repo.add_api_key(row)
            self._events.add(
                session,
                "key.created",
                row.id,
                events_pb2.ApiKeyCreated(key_id=row.id, user_id=user_id, name=name),
            )
        log.info("api key created", key_id=row.id, user_id=user_id)
        return CreatedApiKey(api_key=_api_key(row), secret=secret)

    async def list_api_keys(self, user_id: str) -> list[ApiKey]:
        async with self._db.session() as session:
            return [_api_key(row) for row in await AuthRepository(session).list_api_keys(user_id)]

    async def revoke_api_key(self, user_id: str, key_id: str) -> ApiKey:
        async with self._db.session() as session:
            row = await AuthRepository(session).get_api_key(user_id, key_id)
            # Another user's key answers like an unknown one: ids are not confirmed to strangers.
            if row is None:
                raise NotFound(f"no API key {key_id!r}", param="key_id", code="api_key_not_found")
            if row.revoked_at is None:  # revoking twice is a no-op, not an error
                row.revoked_at = self._clock()
                self._events.add(
                    session,
                    "key.revoked",
                    row.id,
                    events_pb2.ApiKeyRevoked(key_id=row.id, user_id=user_id, key_prefix=row.prefix),
                )
                log.info("api key revoked", key_id=row.id, user_id=user_id)
        return _api_key(row)

    # quotas

    async def set_quota(self, actor_user_id: str, user_id: str, resource: str, limit: int) -> Quota:
        resource = resource.strip()
        async with self._db.session() as session:
            repo = AuthRepository(session)
            await require_admin(repo, actor_user_id, "set quotas")
            if limit < 0:
                raise InvalidRequest("limit must be 0 or more", param="limit", code="invalid_limit")
            gpu_type = gpu_type_of_quota(resource)
            too_long = len(resource) > MAX_QUOTA_RESOURCE or len(gpu_type or "") > MAX_GPU_TYPE
            if too_long or not is_quota_resource(resource):
                raise InvalidRequest(
                    'resource must be "tokens_per_day", "storage_bytes" or "gpu:<type>" ("gpu:*": '
                    f"every type; a type of at most {MAX_GPU_TYPE} characters)",
                    param="resource",
                    code="invalid_resource",
                )
            if gpu_type is not None and limit > MAX_GPU_QUOTA:
                raise InvalidRequest(
                    f"a GPU quota is at most {MAX_GPU_QUOTA} slots", param="limit", code="invalid_limit"
                )
            if await repo.get_user(user_id) is None:
                raise NotFound(f"no user {user_id!r}", param="user_id", code="user_not_found")
            row = await repo.upsert_quota(user_id, resource, limit)
            quota = Quota(user_id=row.user_id, resource=row.resource, limit=row.limit)
            # The scheduler enforces the GPU quotas from these facts (it does not ask auth).
            self._events.add(
                session,
                "quota.set",
                user_id,
                events_pb2.QuotaChanged(
                    user_id=user_id,
                    resource=resource,
                    limit=limit,
                    version=int(self._clock().timestamp() * 1_000_000),
                ),
            )
        log.info("quota set", actor_user_id=actor_user_id, user_id=user_id, resource=resource, limit=limit)
        return quota

    async def list_quotas(self, user_id: str) -> list[Quota]:
        async with self._db.session() as session:
            rows = await AuthRepository(session).list_quotas(user_id)
            return [Quota(user_id=r.user_id, resource=r.resource, limit=r.limit) for r in rows]
