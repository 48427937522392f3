"""The Q-A row model, the mapping of raw records (column -> value) onto rows, and how a source may be shown.

Shared by ingest (which reads the records from files and databases) and feedback (which builds them from
corrections), so both map fields the same way before ``prepare_dataset``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Number
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from libs.datasets.errors import DatasetError


@dataclass(frozen=True)
class QAPair:
    """One training example: the question (instruction), optional context (input) and the answer (output)."""

    instruction: str
    input: str
    output: str
    #: Other wordings of the question (相似问), when the source keeps them: matched by retrieval, trained on.
    similar: tuple[str, ...] = ()


#: Record keys auto-detected as holding a row's similar questions.
SIMILAR_FIELDS = ("similar", "similar_questions", "aliases", "相似问", "相似问题")
#: Separators of similar questions kept in one text cell (CSV, a database column).
_SIMILAR_SPLIT = re.compile(r"[\n|｜]+")


@dataclass(frozen=True)
class FieldMapping:
    """Which raw-record keys hold the question, the optional context, the answer and the similar questions."""

    question: str
    answer: str
    input: str | None = None
    similar: str | None = None


def is_postgres_url(source: str) -> bool:
    return source.startswith(("postgresql://", "postgres://"))


def display_source(source: str) -> str:
    """The source as it may be shown or stored: a database password never leaves this function."""
    if not is_postgres_url(source):
        return source
    parts = urlsplit(source)
    if parts.password is None:
        return source
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def resolve_mapping(
    keys: list[str],
    question_field: str | None = None,
    answer_field: str | None = None,
    input_field: str | None = None,
    *,
    similar_field: str | None = None,
    where: str = "source",
) -> FieldMapping:
    """Map record keys to question/answer/input, auto-detecting the usual names when no field is given."""
    by_lower = {k.strip().lower(): k for k in keys}

    def find(name: str | None) -> str | None:
        if name is None:
            return None
        return name if name in keys else by_lower.get(name.strip().lower())

    found = ", ".join(repr(k) for k in keys) or "none"
    # A named similar field is taken as given: rows without similar questions often leave it out (JSON lines), so
    # the first record need not have it (``prepare_dataset`` says so when no record does).
    similar = (find(similar_field) or similar_field) if similar_field else None
    similar = similar or next((k for name in SIMILAR_FIELDS if (k := find(name))), None)
    return dataclasses.replace(_mapping(keys, find, found, question_field, answer_field, input_field, where),
                               similar=similar)  # fmt: skip


def _mapping(
    keys: list[str],
    find: Callable[[str | None], str | None],
    found: str,
    question_field: str | None,
    answer_field: str | None,
    input_field: str | None,
    where: str,
) -> FieldMapping:
    if question_field or answer_field or input_field:
        mapping = {"question": question_field or "question", "answer": answer_field or "answer"}
        if input_field:
            mapping["input"] = input_field
        missing = [f"{role}={name!r}" for role, name in mapping.items() if find(name) is None]
        if missing:
            raise DatasetError(f"{where}: mapped field(s) {', '.join(missing)} not found; fields found: {found}")
        return FieldMapping(find(mapping["question"]), find(mapping["answer"]), find(input_field))  # type: ignore[arg-type]
    if find("question") and find("answer"):
        return FieldMapping(find("question"), find("answer"), find("input") or find("context"))  # type: ignore[arg-type]
    if find("instruction") and find("output"):
        return FieldMapping(find("instruction"), find("output"), find("input"))  # type: ignore[arg-type]
    raise DatasetError(
        f"{where}: no question/answer or instruction/input/output fields; fields found: {found} "
        "(map them with --question-field/--answer-field)"
    )


def field_text(value: Any) -> str | None:
    """A field value as text: None is empty, numbers become their digits, anything else (bytes, lists) is None."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Number) and not isinstance(value, bool):
        return str(value)
    return None


def extract_pair(record: Mapping[str, Any], mapping: FieldMapping) -> QAPair | None:
    """The raw pair of a record, or None when a field holds something that is not text (a blob, a list)."""
    question = field_text(record.get(mapping.question))
    answer = field_text(record.get(mapping.answer))
    context = field_text(record.get(mapping.input)) if mapping.input else ""
    # Sources that keep similar questions often leave the field out of rows without any (JSON lines): a field the
    # first record did not name is looked for in every record.
    field = (
        similar_key(record, mapping.similar)
        if mapping.similar
        else next((k for k in SIMILAR_FIELDS if k in record), None)
    )
    similar = similar_questions(record.get(field)) if field else ()
    if question is None or answer is None or context is None:
        return None
    return QAPair(question, context, answer, similar)


def similar_key(record: Mapping[str, Any], name: str) -> str | None:
    """The record's key for field ``name``, matched as the other fields are (exactly, else ignoring case)."""
    if name in record:
        return name
    wanted = name.strip().lower()
    return next((k for k in record if isinstance(k, str) and k.strip().lower() == wanted), None)


def similar_questions(value: Any) -> tuple[str, ...]:
    """A similar-questions field: a list of texts, or one text with one question per line or ``|``-separated.
    An item that is not text (an object, a blob) becomes "" — dropped and counted by cleaning, never the row."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(q for q in _SIMILAR_SPLIT.split(value) if q.strip())
    if isinstance(value, list | tuple):
        return tuple(text or "" for text in map(field_text, value))
    return (field_text(value) or "",)
