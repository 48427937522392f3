"""The answers log for agents: what customers were told, searchable, newest first, one page at a time.

Reads the ``answers`` table the gateway writes. An answer's *outcome* is derived, not stored: ``flagged`` once
any agent flagged it (whatever the flag's review), else ``handed_off`` when the gateway passed the customer to a
human, else ``answered``. Filters and the shown outcome use the same rule, so a row never shows one outcome and
is found under another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import ColumnElement, and_, exists, func, not_, or_, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.tables import Answer, Flag
from services.feedback.errors import Invalid, not_found

Outcome = Literal["answered", "handed_off", "flagged"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
#: The filter's values: an outcome, or "" for any (a form's empty select sends it).
OutcomeFilter = Literal["", "answered", "handed_off", "flagged"]
MAX_PER_PAGE = 100


@dataclass(frozen=True)
class FlagBrief:
    """The newest flag on an answer: enough for the log to say where the correction stands."""

    flag_id: str
    status: str
    correction: str | None
    final_correction: str | None
    similar_to: str | None = None  # instead of a correction: the entry the question was attached to


@dataclass(frozen=True)
class AnswerRow:
    answer_id: str
    question: str
    answer: str
    engine_id: str | None
    dataset_id: str | None
    conversation_id: str | None
    status: str
    handoff: bool
    verbatim: bool  # an approved correction served as agents wrote it (the engine could not follow it yet)
    entry_ids: list[str]
    retrieval_scores: list[float]
    confidence: float | None
    latency_ms: float | None
    created_at: datetime
    outcome: str
    flag: FlagBrief | None

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["created_at"] = self.created_at.isoformat()
        return doc


@dataclass(frozen=True)
class AnswerPage:
    rows: list[AnswerRow]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    def to_json(self) -> dict[str, Any]:
        return {
            "answers": [r.to_json() for r in self.rows],
            "page": self.page,
            "per_page": self.per_page,
            "total": self.total,
            "pages": self.pages,
        }


@dataclass(frozen=True)
class AnswerQuery:
    """What the agent searches for; every field optional. ``until`` is exclusive (see ``parse_bound``)."""

    text: str | None = None
    outcome: Outcome | None = None
    engine_id: str | None = None
    conversation_id: str | None = None  # every turn of one customer's chat, to read a flagged answer in context
    since: datetime | None = None
    until: datetime | None = None


def parse_bound(name: str, value: str | None, *, end: bool) -> datetime | None:
    """A date (``2026-11-30``) or an ISO date-time; naive means UTC. A bare date as ``until`` (``end``) covers
    that whole day, which is what an agent picking a date range means."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day + timedelta(days=1 if end else 0), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(value)
        # In UTC now: the database compares instants, and 0001-01-01T00:00+05:00 must fail here (400), not there.
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # OverflowError: the day after 9999-12-31
        raise Invalid(
            "invalid_request", f"{name}: expected a date (YYYY-MM-DD) or an ISO 8601 date-time, got {value!r}"
        ) from None


def _flagged() -> ColumnElement[bool]:
    return exists().where(Flag.answer_id == Answer.answer_id)


def _conditions(query: AnswerQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.text:
        # autoescape: an agent searching for "100%" means the characters, not a LIKE pattern.
        where.append(
            or_(
                Answer.question.icontains(query.text, autoescape=True),
                Answer.answer.icontains(query.text, autoescape=True),
            )
        )
    if query.engine_id:
        where.append(Answer.engine_id == query.engine_id)
    if query.conversation_id:
        where.append(Answer.conversation_id == query.conversation_id)
    if query.since is not None:
        where.append(Answer.created_at >= query.since)
    if query.until is not None:
        where.append(Answer.created_at < query.until)
    if query.outcome == "flagged":
        where.append(_flagged())
    elif query.outcome == "handed_off":
        where.append(and_(Answer.handoff.is_(True), not_(_flagged())))
    elif query.outcome == "answered":
        where.append(and_(Answer.handoff.is_not(True), not_(_flagged())))
    return where


def _row(a: Answer, flag: FlagBrief | None) -> AnswerRow:
    return AnswerRow(
        answer_id=a.answer_id,
        question=a.question,
        answer=a.answer,
        engine_id=a.engine_id,
        dataset_id=a.dataset_id,
        conversation_id=a.conversation_id,
        status=a.status,
        handoff=bool(a.handoff),
        verbatim=bool(a.verbatim),
        entry_ids=[str(e) for e in a.entry_ids or []],
        retrieval_scores=[float(s) for s in a.retrieval_scores or []],
        confidence=a.confidence,
        latency_ms=a.latency_ms,
        created_at=a.created_at,
        outcome="flagged" if flag is not None else ("handed_off" if a.handoff else "answered"),
        flag=flag,
    )


async def search_answers(
    sessions: async_sessionmaker, query: AnswerQuery, *, page: int = 1, per_page: int = 20
) -> AnswerPage:
    """One page of answers matching ``query``, newest first, each with its newest flag (if any)."""
    if query.since and query.until and query.since >= query.until:
        raise Invalid("invalid_request", "since: must be before until")
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    where = _conditions(query)
    listing = (
        select(Answer)
        .where(*where)
        .order_by(Answer.created_at.desc(), Answer.answer_id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    async with sessions() as session:
        total = int(await session.scalar(select(func.count()).select_from(Answer).where(*where)) or 0)
        answers = (await session.scalars(listing)).all()
        ids = [a.answer_id for a in answers]
        flag_rows = (
            (await session.scalars(select(Flag).where(Flag.answer_id.in_(ids)).order_by(Flag.created_at))).all()
            if ids
            else []
        )
    newest: dict[str, FlagBrief] = {}
    for f in flag_rows:  # oldest first, so the newest flag per answer wins
        newest[f.answer_id] = FlagBrief(f.flag_id, f.status, f.correction, f.final_correction, f.similar_to)
    rows = [_row(a, newest.get(a.answer_id)) for a in answers]
    return AnswerPage(rows=rows, page=page, per_page=per_page, total=total)


async def get_row(sessions: async_sessionmaker, answer_id: str) -> AnswerRow:
    """One answer as the log shows it (after a flag, the page re-renders just that row)."""
    async with sessions() as session:
        answer = await session.get(Answer, answer_id)
        if answer is None:
            raise not_found("answer", answer_id)
        flag = await session.scalar(
            select(Flag).where(Flag.answer_id == answer_id).order_by(Flag.created_at.desc()).limit(1)
        )
    if flag is None:
        return _row(answer, None)
    return _row(answer, FlagBrief(flag.flag_id, flag.status, flag.correction, flag.final_correction, flag.similar_to))
