"""The repository on PostgreSQL (what production runs), when one is reachable; skipped otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from suanli_catalog.main import MIGRATIONS, VERSION_TABLE
from suanli_catalog.models import FileRow, ModelRow
from suanli_catalog.repository import FileRepository, ModelRepository
from suanli_common.db import Database

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
TABLES = ("catalog_outbox", "catalog_files", "catalog_models", VERSION_TABLE)

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg() -> AsyncIterator[Database]:
    db = Database(PG_URL)
    try:
        async with asyncio.timeout(3):
            async with db.engine.connect() as conn:
                await conn.execute(text("select 1"))
    except Exception:
        await db.close()
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    await _drop(db)
    await db.migrate(MIGRATIONS, version_table=VERSION_TABLE)
    yield db
    await _drop(db)
    await db.close()


async def _drop(db: Database) -> None:
    async with db.engine.begin() as conn:
        for table in TABLES:
            await conn.execute(text(f"drop table if exists {table} cascade"))


def _model(model_id: str, owner: str, visibility: str, now: datetime) -> ModelRow:
    return ModelRow(
        id=model_id, owner_id=owner, kind="base", state="ready", visibility=visibility, source="path:/m",
        path="/m", architecture="Qwen2ForCausalLM", parameter_count=1, context_length=2048, chat_template="",
        base_model_id="", size_bytes=1, is_default=False, error="", created_at=now, updated_at=now,
    )  # fmt: skip


async def test_visibility_and_ownership_on_postgres(pg: Database) -> None:
    now = datetime.now(UTC)
    async with pg.session() as session:
        models = ModelRepository(session)
        await models.add(_model("mine", "u1", "private", now))
        await models.add(_model("theirs", "u2", "private", now))
        await models.add(_model("open", "u2", "public", now))
        files = FileRepository(session)
        await files.add(
            FileRow(id="file-1", owner_id="u1", filename="a.jsonl", purpose="fine-tune", bytes=3,
                    storage_key="files/u1/file-1", status="processed", status_details="",
                    dataset_format="alpaca", examples=1, tokens=2, tokenizer="bytes/4", created_at=now)
        )  # fmt: skip
    async with pg.session() as session:
        assert [m.id for m in await ModelRepository(session).visible_to("u1")] == ["mine", "open"]
        assert [m.id for m in await ModelRepository(session).visible_to("")] == ["open"]
        assert await FileRepository(session).owned("u2", "file-1") is None
        row = await FileRepository(session).owned("u1", "file-1")
        assert row is not None and row.created_at.tzinfo is not None
