"""Paths to the dirty fixture files shipped under tests/fixtures/ingest and a SQLite source built per test."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ingest"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    """A tiny FAQ table (created here rather than committing a binary .db), including a BLOB and a NULL answer."""
    path = tmp_path / "faq.db"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE faq (id INTEGER PRIMARY KEY, q TEXT, a BLOB, category TEXT)")
        conn.executemany(
            "INSERT INTO faq (q, a, category) VALUES (?, ?, ?)",
            [
                ("如何续费云服务器？", "在「续费管理」中选择实例并支付即可。", "billing"),
                ("如何查看账单？", "进入「费用中心」-「账单管理」查看。", "billing"),
                ("图片答案？", b"\x89PNG\r\n", "misc"),
                ("没有答案的问题？", None, "misc"),
                ("如何备份数据库？", "云数据库每天自动备份一次。", "db"),
            ],
        )
    conn.close()
    return path
