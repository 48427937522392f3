"""SQL sources (a SQLite file, a PostgreSQL query) and the checks on a user's query before it runs.

Exactly one statement: read-only mode alone is not enough, because through PostgreSQL's simple query protocol
``COMMIT; DELETE …`` ends the read-only transaction and runs the DELETE. The parser (sqlparse: aware of quotes,
comments and ``$$`` strings) gives the clear error; the drivers refuse a second statement too (psycopg is made to
use the extended protocol, ``sqlite3`` executes one statement only), so a parser miss is still refused.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlparse
from sqlparse import tokens

from services.ingest.errors import IngestError, LimitExceeded

# A Q-A field is text: a longer string or blob in a query result is an attack or a mistake, not an FAQ answer.
# Bounds what one row (e.g. ``zeroblob(1e9)``) can make the service allocate.
SQLITE_MAX_VALUE_BYTES = 16 * 1024 * 1024
# The progress handler runs every this many SQLite VM instructions: ~ms apart, so the time limit is kept closely.
_PROGRESS_STEPS = 10_000


def _meaningful(statement: sqlparse.sql.Statement) -> bool:
    """False for what ``;;`` or a trailing comment leaves behind: nothing that would run."""
    return any(
        not tok.is_whitespace and tok.ttype not in tokens.Comment and tok.value != ";" for tok in statement.flatten()
    )


def ensure_single_statement(query: str, where: str) -> None:
    """Raise ``IngestError`` unless ``query`` holds exactly one SQL statement (a trailing ``;`` is fine)."""
    statements = [s for s in sqlparse.parse(query) if _meaningful(s)]
    if not statements:
        raise IngestError(f"{where}: the query is empty")
    if len(statements) > 1:
        raise IngestError(
            f"{where}: the query holds {len(statements)} SQL statements; only one SELECT is allowed "
            "(multi-statement queries are refused)"
        )


def too_many_rows(where: str, max_rows: int) -> LimitExceeded:
    return LimitExceeded(f"{where}: more than {max_rows} rows (row limit {max_rows})", limit="rows")


def read_sqlite(
    path: Path, query: str, *, max_rows: int | None = None, timeout_s: float | None = None
) -> Iterator[dict[str, Any]]:
    """Rows of ``query`` run read-only against a SQLite file, at most ``max_rows`` rows and ``timeout_s`` seconds."""
    ensure_single_statement(query, str(path))
    if not path.is_file():
        raise IngestError(f"{path}: file not found")
    with open(path, "rb") as fh:
        if fh.read(16) != b"SQLite format 3\x00":
            raise IngestError(f"{path}: not a SQLite database file")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise IngestError(f"{path}: cannot open SQLite database: {exc}") from None
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, SQLITE_MAX_VALUE_BYTES)
    deadline = time.monotonic() + timeout_s if timeout_s is not None else None
    # A recursive CTE or a cross join can run for ever inside one execute(): the handler aborts it in SQLite's VM.
    if deadline is not None:
        conn.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
    try:
        cursor = conn.execute(query)
        names = [col[0] for col in cursor.description or ()]
        if not names:
            raise IngestError(f"{path}: the query returned no columns (is it a SELECT?)")
        raw = cursor.fetchall() if max_rows is None else cursor.fetchmany(max_rows + 1)
        if max_rows is not None and len(raw) > max_rows:
            raise too_many_rows(str(path), max_rows)
        rows = [dict(zip(names, row, strict=True)) for row in raw]
    except sqlite3.Error as exc:
        if deadline is not None and time.monotonic() > deadline:
            raise LimitExceeded(
                f"{path}: the SQLite query ran longer than {timeout_s:g} s (query time limit {timeout_s:g} s)",
                limit="query_time",
            ) from None
        raise IngestError(f"{path}: SQLite query failed: {exc}") from None
    finally:
        conn.close()
    return iter(rows)


def read_postgres(url: str, query: str, *, shown: str, max_rows: int | None = None) -> Iterator[dict[str, Any]]:
    """Rows of ``query`` run in a read-only transaction against PostgreSQL (psycopg 3); ``shown`` names the source
    in errors without its password."""
    import psycopg
    from psycopg.rows import dict_row

    ensure_single_statement(query, shown)

    def first_line(exc: Exception) -> str:
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__

    try:
        conn = psycopg.connect(url, connect_timeout=10, row_factory=dict_row)
    except psycopg.Error as exc:
        raise IngestError(f"{shown}: cannot connect to PostgreSQL: {first_line(exc)}") from None
    try:
        with conn:
            # The query comes from the command line; read-only keeps a typo from changing the company's data.
            conn.read_only = True
            # prepare=True: the extended protocol, where PostgreSQL itself refuses a second statement (psycopg
            # sends a parameterless query with the simple protocol otherwise, which runs ``COMMIT; DELETE …``).
            cursor = conn.execute(query, prepare=True)  # type: ignore[call-overload]
            if cursor.description is None:
                raise IngestError(f"{shown}: the query returned no rows (is it a SELECT?)")
            raw = cursor.fetchall() if max_rows is None else cursor.fetchmany(max_rows + 1)
            if max_rows is not None and len(raw) > max_rows:
                raise too_many_rows(shown, max_rows)
            rows = [dict(row) for row in raw]
    except psycopg.Error as exc:
        raise IngestError(f"{shown}: PostgreSQL query failed: {first_line(exc)}") from None
    return iter(rows)
