"""Readers that turn a source (file or database) into raw records; ``libs.datasets.records`` maps them to Q-A rows.

Readers only parse; they never clean. Every reader error is an ``IngestError`` naming the file and, where there is
one, the line, so the CLI can print it without a traceback. The database readers and their query checks are in
``services.ingest.sql``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from libs.datasets.records import display_source, is_postgres_url
from services.ingest.errors import IngestError
from services.ingest.sql import read_postgres, read_sqlite, too_many_rows

Format = Literal["json", "jsonl", "csv", "sqlite", "postgres"]
FORMATS: tuple[str, ...] = ("json", "jsonl", "csv", "sqlite", "postgres")
_SUFFIXES = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".db": "sqlite",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
}
# Tried in order: UTF-8 (a BOM is dropped), then GB18030, a superset of GBK/GB2312 that Excel in China writes.
_ENCODINGS = ("utf-8-sig", "gb18030")


def detect_format(source: str, fmt: str | None = None) -> Format:
    """The explicit ``fmt`` if given, else the format implied by a postgres URL or the file suffix."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise IngestError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt  # type: ignore[return-value]
    if is_postgres_url(source):
        return "postgres"
    suffix = Path(source).suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]  # type: ignore[return-value]
    raise IngestError(f"{source}: cannot tell the format from the suffix {suffix!r}; pass --format")


def read_records(
    source: str,
    fmt: str | None = None,
    query: str | None = None,
    *,
    max_rows: int | None = None,
    query_timeout_s: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Raw records (column -> value) from ``source``. Database formats need ``query``; file formats refuse one.

    ``max_rows`` (any format) and ``query_timeout_s`` (SQLite) are the HTTP API's limits; the CLI sets none.
    Exceeding one raises ``LimitExceeded``.
    """
    kind = detect_format(source, fmt)
    if kind in ("sqlite", "postgres"):
        if not query:
            raise IngestError(f"{display_source(source)}: a {kind} source needs --query (a SELECT statement)")
        if kind == "sqlite":
            return read_sqlite(Path(source), query, max_rows=max_rows, timeout_s=query_timeout_s)
        return read_postgres(source, query, shown=display_source(source), max_rows=max_rows)
    if query:
        raise IngestError(f"{source}: --query only applies to sqlite and postgres sources, not {kind}")
    path = Path(source)
    reader = {"json": read_json, "jsonl": read_jsonl}.get(kind, read_csv)
    records = reader(path)
    if max_rows is None:
        return records
    head = list(islice(records, max_rows + 1))
    if len(head) > max_rows:
        raise too_many_rows(str(path), max_rows)
    return iter(head)


def decode_bytes(data: bytes, name: str) -> str:
    """Text of a file in UTF-8 (with or without BOM) or GB18030/GBK; anything else is an error."""
    for encoding in _ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" in text:
            break
        return text
    raise IngestError(f"{name}: not UTF-8 or GBK/GB18030 text (is it a binary file?)")


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IngestError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise IngestError(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from None
    text = decode_bytes(data, str(path))
    if not text.strip():
        raise IngestError(f"{path}: file is empty")
    return text


def _as_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise IngestError(f"{where}: expected a JSON object with the Q-A fields, got {type(value).__name__}")
    return value


def read_json(path: Path) -> Iterator[dict[str, Any]]:
    """A ``.json`` file holding one list of objects."""
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IngestError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, list):
        raise IngestError(f"{path}: expected a JSON list of objects, got a {type(data).__name__}")
    return iter([_as_object(item, f"{path}: item {i}") for i, item in enumerate(data, 1)])


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """A ``.jsonl`` file: one JSON object per line; blank lines are skipped."""
    text = _read_text(path)
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise IngestError(f"{path}: line {lineno}: invalid JSON at column {exc.colno}: {exc.msg}") from None
        rows.append(_as_object(value, f"{path}: line {lineno}"))
    return iter(rows)


def _sniff_delimiter(header_line: str) -> str:
    # Look at the header only: answers are full of commas and semicolons, a header rarely is.
    counts = {d: header_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_csv(path: Path) -> Iterator[dict[str, Any]]:
    """A CSV with a header row, in UTF-8, UTF-8 with BOM or GBK/GB18030; comma, tab or semicolon separated."""
    text = _read_text(path)
    delimiter = _sniff_delimiter(text.lstrip().splitlines()[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[dict[str, Any]] = []
    try:
        header = [h.strip() for h in next(reader)]
        if len(set(header)) != len(header):
            raise IngestError(f"{path}: line 1: duplicate column names in header {header}")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                raise IngestError(
                    f"{path}: line {reader.line_num}: {len(row)} fields but the header has {len(header)} "
                    "(an unquoted delimiter inside a value?)"
                )
            rows.append(dict(zip(header, [*row, *[None] * (len(header) - len(row))], strict=True)))
    except csv.Error as exc:
        raise IngestError(f"{path}: line {reader.line_num}: malformed CSV: {exc}") from None
    return iter(rows)
