"""The database layer and the outbox, on SQLite and (when reachable) PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import String, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from suanli_common.bus import EventPublisher, declare_streams, make_broker, subscribe_events
from suanli_common.db import Database
from suanli_common.outbox import Outbox, OutboxMixin
from suanli_common.proto.suanli.v1.events_pb2 import UserCreated
from suanli_common.testing import NatsServer

POSTGRES_URL = os.environ.get("SUANLI_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


class WidgetBase(DeclarativeBase):
    pass


class Widget(WidgetBase):
    __tablename__ = "common_test_widgets"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)


class WidgetOutbox(OutboxMixin, WidgetBase):
    __tablename__ = "common_test_outbox"


def write_migrations(folder: Path) -> Path:
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(
        "from suanli_common.db import run_migrations_online\nrun_migrations_online(None)\n"
    )
    (folder / "versions" / "0001_widgets.py").write_text(
        textwrap.dedent(
            """
            import sqlalchemy as sa
            from alembic import op
            revision = "0001"
            down_revision = None
            def upgrade():
                op.create_table("common_test_widgets", sa.Column("id", sa.String(40), primary_key=True))
                op.create_table(
                    "common_test_outbox",
                    sa.Column("id", sa.String(40), primary_key=True),
                    sa.Column("envelope", sa.LargeBinary()),
                    sa.Column("traceparent", sa.String(128)),
                    sa.Column("created_at", sa.DateTime(timezone=True)),
                )
            """
        )
    )
    return folder


async def _postgres_reachable() -> bool:
    db = Database(POSTGRES_URL)
    try:
        async with db.engine.connect() as conn:
            await conn.execute(text("select 1"))
        return True
    except Exception:
        return False
    finally:
        await db.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}")
    else:
        if not await _postgres_reachable():
            pytest.skip("no PostgreSQL reachable")
        db = Database(POSTGRES_URL)
        async with db.engine.begin() as conn:
            for table in ("common_test_widgets", "common_test_outbox", "alembic_version_common_test"):
                await conn.execute(text(f"drop table if exists {table}"))
    yield db
    await db.close()


async def test_migrations_run_once_and_sessions_commit(database: Database, tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path / "migrations")
    await database.migrate(migrations, version_table="alembic_version_common_test")
    await database.migrate(migrations, version_table="alembic_version_common_test")  # idempotent
    async with database.session() as session:
        session.add(Widget(id="w1"))
    with pytest.raises(RuntimeError):
        async with database.session() as session:
            session.add(Widget(id="w2"))
            raise RuntimeError("rolls back")
    async with database.session() as session:
        assert (await session.scalars(select(Widget.id))).all() == ["w1"]


async def test_one_sqlite_connection_queues_units_of_work_in_order(tmp_path: Path) -> None:
    """With one connection, concurrent writers wait their turn in the event loop, in the order they
    asked, instead of meeting in SQLite's busy handler; each still commits."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'one.sqlite3'}", sqlite_connections=1)
    try:
        migrations = write_migrations(tmp_path / "migrations")
        await db.migrate(migrations, version_table="alembic_version_common_test")
        order: list[str] = []
        first_inside = asyncio.Event()

        async def write(widget_id: str) -> None:
            async with db.session() as session:
                session.add(Widget(id=widget_id))
                await session.flush()  # takes the connection (a session connects at its first statement)
                order.append(f"begin {widget_id}")
                first_inside.set()
                await asyncio.sleep(0.05)  # the others are queued meanwhile, not interleaved
                order.append(f"end {widget_id}")

        first = asyncio.create_task(write("w1"))
        await first_inside.wait()
        await asyncio.gather(first, write("w2"), write("w3"))
        assert order == ["begin w1", "end w1", "begin w2", "end w2", "begin w3", "end w3"]
        assert db.engine.pool.size() == 1  # type: ignore[attr-defined]
        async with db.session() as session:
            assert set((await session.scalars(select(Widget.id))).all()) == {"w1", "w2", "w3"}
    finally:
        await db.close()


async def test_an_in_memory_database_takes_a_connection_count_as_the_one_it_has() -> None:
    db = Database("sqlite+aiosqlite://", sqlite_connections=1)  # would be refused with a pool size
    try:
        async with db.session() as session:
            assert (await session.execute(select(1))).scalar() == 1
    finally:
        await db.close()


async def test_outbox_publishes_after_commit_only(
    database: Database, tmp_path: Path, nats_server: NatsServer
) -> None:
    await database.migrate(write_migrations(tmp_path / "migrations"), "alembic_version_common_test")
    broker = make_broker(nats_server.url, service="test")
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def on_created(event: object) -> None:
        await seen.put(event.data.user_id)  # type: ignore[attr-defined]

    subscribe_events(broker, "user.created", UserCreated, on_created, durable="outbox-test")
    await broker.connect()
    await declare_streams(broker)
    await broker.start()
    outbox = Outbox(database, WidgetOutbox, EventPublisher(broker, "test"), source="test")
    relay = asyncio.ensure_future(outbox.run(interval=5))
    try:
        with pytest.raises(RuntimeError):
            async with database.session() as session:
                outbox.add(session, "user.created", "user_lost", UserCreated(user_id="user_lost"))
                raise RuntimeError("the change fails, so must its event")
        async with database.session() as session:
            session.add(Widget(id="w1"))
            outbox.add(session, "user.created", "user_1", UserCreated(user_id="user_1"))
        # Delivered well before the relay's polling interval: the commit woke it.
        assert await asyncio.wait_for(seen.get(), 3) == "user_1"
        await asyncio.sleep(0.3)
        assert seen.empty()
        async with database.session() as session:
            assert (await session.scalars(select(WidgetOutbox))).all() == []
    finally:
        relay.cancel()
        await broker.stop()
