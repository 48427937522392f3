"""The PostgreSQL reader against the real local server: a temp table with a unique name, read, then dropped."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from libs.datasets.pipeline import prepare_dataset
from services.ingest.errors import IngestError
from services.ingest.sources import read_records

PG_URL = os.environ.get("KEFU_TEST_INGEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def faq_table() -> Iterator[str]:
    name = f"ingest_faq_{uuid.uuid4().hex[:10]}"
    try:
        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required at {PG_URL} (set KEFU_TEST_INGEST_PG_URL): {exc}")
    table = sql.Identifier(name)
    with conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, q text, a text, hits int)").format(table))
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {} (q, a, hits) VALUES (%s, %s, %s)").format(table),
                [
                    ("如何申请发票？", "在「费用中心」-「发票管理」中申请开票。", 10),
                    ("客服电话是多少？", "请拨打400-820-8820，或联系13800138000。", 7),
                    ("如何申请发票", "发票在费用中心申请。", 3),
                    ("没有答案？", None, 1),
                ],
            )
        try:
            yield name
        finally:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


def test_reads_rows_from_postgres(faq_table: str) -> None:
    rows = list(read_records(PG_URL, query=f"SELECT q AS question, a AS answer, hits FROM {faq_table} ORDER BY id"))
    assert len(rows) == 4
    assert rows[0] == {"question": "如何申请发票？", "answer": "在「费用中心」-「发票管理」中申请开票。", "hits": 10}


def test_postgres_rows_go_through_the_pipeline(faq_table: str) -> None:
    records = read_records(PG_URL, query=f"SELECT q AS question, a AS answer FROM {faq_table} ORDER BY id")
    card = prepare_dataset(records, source=PG_URL).card
    assert card["counts"]["read"] == 4 and card["counts"]["kept"] == 2
    assert card["dropped"] == {"empty_answer": 1}
    assert card["duplicates_removed"] == {"exact": 1, "near": 0}
    assert card["pii_redacted"] == {"phone": 1}


def test_the_query_runs_read_only(faq_table: str) -> None:
    with pytest.raises(IngestError, match=r"PostgreSQL query failed: .*read-only transaction"):
        read_records(PG_URL, query=f"DELETE FROM {faq_table} RETURNING id")
    with psycopg.connect(PG_URL) as conn:
        assert conn.execute(f"SELECT count(*) FROM {faq_table}").fetchone() == (4,)


def test_bad_query_and_bad_url_are_clean_errors(faq_table: str) -> None:
    with pytest.raises(IngestError, match=f'relation "{faq_table}_nope" does not exist'):
        read_records(PG_URL, query=f"SELECT * FROM {faq_table}_nope")
    with pytest.raises(
        IngestError, match=r"postgresql://kefu:\*\*\*@127\.0\.0\.1:1/test: cannot connect to PostgreSQL"
    ):
        read_records("postgresql://kefu:secret@127.0.0.1:1/test", query="SELECT 1")


def test_multi_statement_queries_are_refused(faq_table: str) -> None:
    # The bypass the read-only transaction alone let through: COMMIT ends it, the DELETE then runs.
    for query in (
        f"SELECT 1; COMMIT; DELETE FROM {faq_table}",
        f"COMMIT; DELETE FROM {faq_table} RETURNING id",
        f"SELECT q AS question, a AS answer FROM {faq_table}; /* trailing */ DROP TABLE {faq_table}",
    ):
        with pytest.raises(IngestError, match="multi-statement queries are refused"):
            read_records(PG_URL, query=query)
    with psycopg.connect(PG_URL) as conn:
        assert conn.execute(f"SELECT count(*) FROM {faq_table}").fetchone() == (4,)
    # Semicolons inside literals, and one trailing semicolon, are still one statement.
    rows = list(read_records(PG_URL, query=f"SELECT q AS question, 'a;b' AS answer, $$x;y$$ AS c FROM {faq_table};"))
    assert len(rows) == 4 and rows[0]["answer"] == "a;b" and rows[0]["c"] == "x;y"


def test_the_database_refuses_a_second_statement_even_past_the_parser(faq_table: str) -> None:
    """Defence in depth: with the parser check out of the way, PostgreSQL itself refuses (extended protocol)."""
    from services.ingest import sql as ingest_sql

    original = ingest_sql.ensure_single_statement
    ingest_sql.ensure_single_statement = lambda query, where: None  # type: ignore[assignment]
    try:
        with pytest.raises(IngestError, match="cannot insert multiple commands into a prepared statement"):
            read_records(PG_URL, query=f"COMMIT; DELETE FROM {faq_table}")
    finally:
        ingest_sql.ensure_single_statement = original
    with psycopg.connect(PG_URL) as conn:
        assert conn.execute(f"SELECT count(*) FROM {faq_table}").fetchone() == (4,)


def test_row_limit(faq_table: str) -> None:
    from services.ingest.errors import LimitExceeded

    assert len(list(read_records(PG_URL, query=f"SELECT q, a FROM {faq_table}", max_rows=4))) == 4
    with pytest.raises(LimitExceeded, match=r"more than 3 rows \(row limit 3\)") as info:
        read_records(PG_URL, query=f"SELECT q, a FROM {faq_table}", max_rows=3)
    assert info.value.limit == "rows"
