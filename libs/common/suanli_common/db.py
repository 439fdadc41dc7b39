"""The database layer: SQLAlchemy 2 async on SQLite (embedded) or PostgreSQL, Alembic migrations.

Each service keeps its migrations in `suanli_<name>/migrations/` and its own Alembic version
table, so several services can share one PostgreSQL database without touching each other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import DateTime, event
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database: SQLite stores no offset, so values read
    back naive are UTC by construction and get their tzinfo back here."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Base of every service's tables (each service has its own metadata subclass)."""


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets readers run beside the one writer; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    def __init__(self, url: str, *, echo: bool = False, sqlite_connections: int | None = None) -> None:
        """`sqlite_connections`: how many connections a SQLite file is opened with (default:
        SQLAlchemy's pool). SQLite lets one writer in at a time, and a writer that finds another
        one in sleeps in SQLite's busy handler (1, 2, 5, 10, ... 100 ms between tries), so under a
        steady stream of writes each connection's waits stall it long after the file is free; a
        service that writes at a high rate takes one connection, and its units of work queue for
        it in the event loop (first come, first served, no sleeps) instead."""
        self.url = url
        # A pre-ping guards against server connections dropped while idle (PostgreSQL); a SQLite
        # file has none, and the ping would cost a thread round trip on every session.
        parsed = make_url(url)
        sqlite = parsed.get_backend_name() == "sqlite"
        options: dict[str, Any] = {"pool_pre_ping": not sqlite}
        # An in-memory database is one connection already (SQLAlchemy's StaticPool, no pool size).
        if sqlite and sqlite_connections and parsed.database not in (None, "", ":memory:"):
            options |= {"pool_size": sqlite_connections, "max_overflow": 0}
        self.engine: AsyncEngine = create_async_engine(url, echo=echo, **options)
        if sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits when the block ends, rolls back on an exception."""
        async with self._sessions() as session, session.begin():
            yield session

    async def migrate(self, migrations: Path, version_table: str) -> None:
        def upgrade(connection: Connection) -> None:
            config = Config()
            config.set_main_option("script_location", str(migrations))
            config.attributes["connection"] = connection
            config.attributes["version_table"] = version_table
            command.upgrade(config, "head")

        async with self.engine.begin() as conn:
            await conn.run_sync(upgrade)

    async def close(self) -> None:
        await self.engine.dispose()


def run_migrations_online(target_metadata: Any) -> None:
    """Body of a service's `migrations/env.py`: migrate on the connection `Database.migrate` gives."""
    from alembic import context

    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=context.config.attributes.get("version_table", "alembic_version"),
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
