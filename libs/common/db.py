"""Async SQLAlchemy engine + sessions, and running the Alembic migrations.

PostgreSQL (asyncpg) when ``KEFU_DATABASE_URL`` is set, else SQLite (aiosqlite) under ``KEFU_HOME`` so the
single-machine stack needs no server. Several processes share that SQLite file: WAL + a busy timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from libs.common.settings import KefuSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_parent(url: str) -> None:
    """SQLite creates the file, not its folder (a first `kefu ingest` on a new machine has no $KEFU_HOME yet)."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        _sqlite_parent(url)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_database(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``. Synchronous: call it before the event loop or in a thread."""
    _sqlite_parent(url)
    command.upgrade(alembic_config(url), revision)


@asynccontextmanager
async def open_database(settings: KefuSettings, *, migrate: bool = True) -> AsyncIterator[async_sessionmaker]:
    """Sessions for a short-lived command (CLI): migrate if asked, dispose the engine at the end."""
    url = settings.effective_database_url
    if migrate:
        await asyncio.to_thread(upgrade_database, url)
    engine = make_engine(url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()
