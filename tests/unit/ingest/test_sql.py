"""SQL query checks (one statement only) and the SQLite reader's limits (rows, query time, value size)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from services.ingest.errors import IngestError, LimitExceeded
from services.ingest.sources import read_records
from services.ingest.sql import ensure_single_statement


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1",
        "SELECT 1;",
        "SELECT 1; -- a comment",
        "SELECT ';' AS a",
        'SELECT "a;b" FROM t',
        "SELECT $$a;b$$",
        "SELECT 1 /* ; DROP TABLE t */",
        "WITH a AS (SELECT 1) SELECT * FROM a;\n",
    ],
)
def test_one_statement_passes(query: str) -> None:
    ensure_single_statement(query, "src")


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1; DELETE FROM t",
        "COMMIT; DELETE FROM t",
        "SELECT 1;;SELECT 2",
        "SELECT 'x'; /* hidden */ DROP TABLE t",
        "SELECT 1;\nATTACH DATABASE '/etc/passwd' AS p",
    ],
)
def test_more_than_one_statement_is_refused(query: str) -> None:
    with pytest.raises(IngestError, match=r"src: the query holds \d SQL statements; .*multi-statement"):
        ensure_single_statement(query, "src")


def test_empty_query_is_refused() -> None:
    with pytest.raises(IngestError, match="the query is empty"):
        ensure_single_statement(" ; -- nothing", "src")


def test_sqlite_multi_statement_is_refused_before_it_runs(sqlite_db: Path) -> None:
    with pytest.raises(IngestError, match="multi-statement queries are refused"):
        read_records(str(sqlite_db), query="SELECT q AS question FROM faq; DELETE FROM faq")
    assert len(list(read_records(str(sqlite_db), query="SELECT q FROM faq;"))) == 5


def test_sqlite_row_limit(sqlite_db: Path) -> None:
    assert len(list(read_records(str(sqlite_db), query="SELECT q FROM faq", max_rows=5))) == 5
    with pytest.raises(LimitExceeded, match=r"more than 4 rows \(row limit 4\)") as info:
        read_records(str(sqlite_db), query="SELECT q FROM faq", max_rows=4)
    assert info.value.limit == "rows"


def test_file_formats_obey_the_row_limit(tmp_path: Path) -> None:
    path = tmp_path / "faq.jsonl"
    path.write_text('{"question": "q1", "answer": "a"}\n{"question": "q2", "answer": "a"}\n', encoding="utf-8")
    assert len(list(read_records(str(path), max_rows=2))) == 2
    with pytest.raises(LimitExceeded, match=r"faq\.jsonl: more than 1 rows"):
        read_records(str(path), max_rows=1)


def test_sqlite_query_time_limit(sqlite_db: Path) -> None:
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n"
    started = time.monotonic()
    with pytest.raises(LimitExceeded, match=r"ran longer than 0.2 s \(query time limit 0.2 s\)") as info:
        read_records(str(sqlite_db), query=endless, query_timeout_s=0.2)
    assert info.value.limit == "query_time"
    assert time.monotonic() - started < 2  # aborted inside SQLite, not after the query finished


def test_sqlite_refuses_giant_values(sqlite_db: Path) -> None:
    with pytest.raises(IngestError, match="SQLite query failed: string or blob too big"):
        read_records(str(sqlite_db), query="SELECT zeroblob(100000000) AS answer")


def test_sqlite_query_is_read_only(sqlite_db: Path) -> None:
    with pytest.raises(IngestError, match="SQLite query failed"):
        read_records(str(sqlite_db), query="DELETE FROM faq RETURNING id")
    assert sqlite3.connect(sqlite_db).execute("SELECT count(*) FROM faq").fetchone() == (5,)
