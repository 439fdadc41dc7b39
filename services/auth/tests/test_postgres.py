"""The same service on PostgreSQL (production's database), in a throw-away database.

Skipped where no PostgreSQL answers at SUANLI_TEST_POSTGRES_URL
(default postgresql+asyncpg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from suanli_auth.main import running_auth
from suanli_auth.settings import AuthSettings
from suanli_common.errors import Conflict, Unauthenticated
from suanli_common.grpc import make_channel
from suanli_common.proto.suanli.v1 import auth_pb2, auth_pb2_grpc

pytestmark = pytest.mark.postgres

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh database made from the reachable server, dropped afterwards."""
    url = make_url(os.environ.get("SUANLI_TEST_POSTGRES_URL", DEFAULT_URL))
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    name = f"suanli_auth_test_{secrets.token_hex(4)}"
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server, no rights: this machine cannot run the test
        await admin.dispose()
        pytest.skip(f"PostgreSQL not usable at {url.render_as_string(hide_password=True)}: {exc}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def test_the_service_works_on_postgres(
    settings: AuthSettings, postgres_url: str, mailed_code: Any, clock: Any
) -> None:
    settings = settings.model_copy(update={"database_url": postgres_url})
    async with running_auth(settings, clock) as auth:
        channel = make_channel(auth.address)
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        try:
            user = await stub.SignUp(
                auth_pb2.SignUpRequest(email="ada@example.com", password="correct horse")
            )
            with pytest.raises(Conflict):
                await stub.SignUp(auth_pb2.SignUpRequest(email="ada@example.com", password="correct horse"))

            await stub.RequestEmailCode(auth_pb2.RequestEmailCodeRequest(email="ada@example.com"))
            with pytest.raises(Unauthenticated):
                await stub.Login(auth_pb2.LoginRequest(email="ada@example.com", code="000000x"))
            login = await stub.Login(auth_pb2.LoginRequest(email="ada@example.com", code=mailed_code()))
            assert login.user.id == user.id

            key = await stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(user_id=user.id, name="pg"))
            principal = await stub.Authenticate(auth_pb2.AuthenticateRequest(credential=key.key))
            assert principal.key_id == key.api_key.id
            (listed,) = (await stub.ListApiKeys(auth_pb2.ListApiKeysRequest(user_id=user.id))).api_keys
            # Timestamps come back as the UTC instants they were written as.
            assert listed.last_used_at.seconds == int(clock.now.timestamp())
            assert listed.created_at.seconds == int(clock.now.timestamp())
        finally:
            await channel.close()

        # Migrations ran into this service's own version table.
        async with auth.service._db.engine.connect() as conn:  # type: ignore[attr-defined]
            version = (await conn.execute(text("SELECT version_num FROM alembic_version_auth"))).scalar()
        assert version == "0001"
