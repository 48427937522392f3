"""Fixtures for real infrastructure: a Tansu broker on a free port and a throwaway PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid

# `make test` runs two xdist workers on two cores: one torch thread each (inherited by the stacks they start)
# keeps two trainings from oversubscribing the cores. Set before anything imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from kefu.bench import free_port
from kefu.tansu import create_topics, tansu_command, wait_port
from libs.common.db import upgrade_database
from libs.common.events import all_topic_names
from libs.common.settings import KefuSettings

PG_ADMIN_DSN = os.environ.get("KEFU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def running_tansu() -> Iterator[str]:
    """A real Kafka-protocol broker (Tansu, memory storage) on a free port with the lifecycle topics created."""
    port = free_port()
    proc = subprocess.Popen(tansu_command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bootstrap = f"127.0.0.1:{port}"
    try:
        asyncio.run(wait_port("127.0.0.1", port))
        asyncio.run(create_topics(bootstrap, all_topic_names()))
        yield bootstrap
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def tansu() -> Iterator[str]:
    """The session's broker; a test that kills consumers or poisons topics starts its own with ``running_tansu``."""
    with running_tansu() as bootstrap:
        yield bootstrap


def pg_admin(sql: str) -> None:
    """Run one statement as the PostgreSQL admin (CREATE/DROP DATABASE); fails the test if there is no server."""

    async def run() -> None:
        try:
            conn = await asyncpg.connect(PG_ADMIN_DSN)
        except OSError as exc:
            pytest.fail(f"PostgreSQL is required at {PG_ADMIN_DSN} (set KEFU_TEST_PG_DSN): {exc}")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def pg_database_url(name: str) -> str:
    return PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"


@contextlib.contextmanager
def migrated_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database (its name) migrated to head, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    pg_admin(f'CREATE DATABASE "{name}"')
    try:
        upgrade_database(pg_database_url(name))
        yield name
    finally:
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run (one per xdist worker)."""
    with migrated_database("kefu_test") as name:
        yield pg_database_url(name)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated database that ``fresh_pg_url`` copies (CREATE DATABASE … TEMPLATE: no Alembic per test)."""
    with migrated_database("kefu_tmpl") as name:
        yield name


@pytest.fixture
def fresh_pg_url(pg_template: str) -> Iterator[str]:
    """A database of this test's own. For tests that run a job runner or claim jobs: on the worker's shared
    ``pg_url`` they would take (and train) whatever job another test left queued."""
    name = f"kefu_t_{uuid.uuid4().hex[:10]}"
    pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    try:
        yield pg_database_url(name)
    finally:
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(tmp_path: Path, tansu: str, pg_url: str) -> KefuSettings:
    return KefuSettings(
        home=tmp_path / "home",
        database_url=pg_url,
        kafka_bootstrap=tansu,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=500,
        migrate_on_start=False,
        outbox_poll_seconds=0.05,
    )


@pytest.fixture
async def db_sessions(pg_url: str) -> AsyncIterator:
    from libs.common.db import make_engine, make_sessionmaker

    engine = make_engine(pg_url)
    yield make_sessionmaker(engine)
    await engine.dispose()
