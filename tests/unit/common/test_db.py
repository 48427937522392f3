"""The embedded default database on a new machine: nothing exists yet, not even $KEFU_HOME."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import inspect

from libs.common.db import make_engine, upgrade_database


def test_migrating_creates_the_sqlite_folder(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/new-home/kefu.db"
    upgrade_database(url)

    async def tables() -> set[str]:
        engine = make_engine(url)
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        await engine.dispose()
        return names

    assert {"answers", "knowledge_updates", "flags"} <= asyncio.run(tables())
