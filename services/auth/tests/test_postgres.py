"""The same service on PostgreSQL (production's database), in a throw-away database: accounts and
keys, and metering (its sums and conditional updates).

Skipped where no PostgreSQL answers at SUANLI_TEST_POSTGRES_URL
(default postgresql+asyncpg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from suanli_auth.domain import GpuHold, IntervalKind, JobFact, PriceKind, TokenUsage
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
        assert version == "0002"


async def test_metering_works_on_postgres(settings: AuthSettings, postgres_url: str, clock: Any) -> None:
    settings = settings.model_copy(
        update={
            "database_url": postgres_url,
            "prices": {PriceKind.gpu_hour: {"*": 3.6}, PriceKind.input_tokens: {"*": 1.0}},
        }
    )
    t0 = datetime(2026, 3, 10, 23, tzinfo=UTC)
    clock.now = t0 + timedelta(hours=3)
    async with running_auth(settings, clock) as auth:
        channel = make_channel(auth.address)
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        try:
            ada = await stub.SignUp(auth_pb2.SignUpRequest(email="ada@example.com", password="correct horse"))
            admin = await stub.SignUp(
                auth_pb2.SignUpRequest(email="boss@example.com", password="correct horse")
            )
            ledger = auth.metering.ledger
            usage = TokenUsage("evt_1", t0, ada.id, "key_a", "tiny", "dep_x", "chat.completions", 500_000, 10)
            assert await ledger.record_tokens(usage)
            assert not await ledger.record_tokens(usage)
            # A batch: one insert that skips what is stored (a free request, outside the report).
            free = replace(
                usage, event_id="evt_2", at=t0 - timedelta(days=3), prompt_tokens=0, completion_tokens=0
            )
            assert await ledger.record_token_batch([usage, free, free]) == [False, True, False]
            hold = GpuHold(IntervalKind.job, "job_1", 1, ada.id, "L4", 2)
            await ledger.job_changed(JobFact("succeeded", t0 + timedelta(hours=2), hold))  # before its start
            await ledger.job_changed(JobFact("running", t0, hold))
            await ledger.job_changed(
                JobFact("running", t0 + timedelta(hours=1), replace(hold, resource_id="job_2"))
            )

            request = auth_pb2.GetUsageRequest(actor_user_id=ada.id, user_id=ada.id, group_by="day")
            request.start.FromDatetime(t0 - timedelta(days=1))
            request.end.FromDatetime(t0 + timedelta(days=1))
            report = await stub.GetUsage(request)
            # job_1: 2 GPUs 23:00-01:00; job_2: 2 GPUs from 00:00 until now (02:00). 1000 micros a GPU-s.
            assert [
                (ln.group, ln.gpu_seconds, ln.requests, ln.input_tokens, ln.cost_micros)
                for ln in report.lines
            ] == [
                ("2026-03-10", 7200.0, 1, 500_000, 7_200_000 + 500_000),
                ("2026-03-11", 7200.0 + 14400.0, 0, 0, 21_600_000),
            ]
            await stub.SetQuota(
                auth_pb2.SetQuotaRequest(
                    actor_user_id=admin.id, quota=auth_pb2.Quota(user_id=ada.id, resource="gpu:L4", limit=4)
                )
            )
            await stub.SetQuota(
                auth_pb2.SetQuotaRequest(
                    actor_user_id=admin.id,
                    quota=auth_pb2.Quota(user_id=ada.id, resource="tokens_per_day", limit=10**6),
                )
            )
            status = await stub.GetQuotaStatus(auth_pb2.GetQuotaStatusRequest(user_id=ada.id))
            # It is 02:00 on the 11th: the request of the 10th is yesterday's.
            assert [(q.resource, q.used) for q in status.quotas] == [("gpu:L4", 2), ("tokens_per_day", 0)]
            await stub.AddCredit(
                auth_pb2.AddCreditRequest(actor_user_id=admin.id, user_id=ada.id, amount_micros=50_000_000)
            )
            balance = await stub.GetBalance(auth_pb2.GetBalanceRequest(user_id=ada.id))
            assert (balance.credits_micros, balance.charges_micros) == (50_000_000, 29_300_000)
        finally:
            await channel.close()
