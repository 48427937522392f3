"""Flags: an agent flags a served answer (with a reason and maybe a correction); an admin reviews it.

A flag is written to the database and its ``feedback.flagged`` event to the outbox in ONE transaction, so an
accepted flag is never lost and never announced without being stored. Statuses: open → approved | rejected
(re-reviewable) → released (final: the correction is in a dataset version).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.common.artifacts import ArtifactStore
from libs.common.events import FeedbackFlagged
from libs.common.outbox import enqueue
from libs.common.tables import Answer, Flag, utcnow
from services.feedback import live
from services.feedback.errors import Conflict, Invalid, not_found
from services.feedback.metrics import FLAGS

Status = Literal["open", "approved", "rejected", "released"]
STATUSES: tuple[str, ...] = get_args(Status)
#: A list filter: one status, or "all" (one Literal, not a union, so a bad value gets a one-line 400 message).
StatusFilter = Literal["open", "approved", "rejected", "released", "all"]
AUTO_REVIEWER = "auto-approve"
Action = Literal["approve", "edit", "reject"]


@dataclass(frozen=True)
class FlagView:
    """A flag with the answer it is about and that answer's lineage: what the API and the review page show."""

    flag_id: str
    answer_id: str
    status: str
    reason: str
    correction: str | None
    final_correction: str | None
    agent: str
    reviewer: str | None
    review_note: str | None
    released_dataset_id: str | None
    created_at: datetime
    reviewed_at: datetime | None
    similar_to: str | None  # instead of a correction: the question is another wording of this entry
    entry_question: str | None  # the question of the entry the flag changed (or names), once known
    question: str
    answer: str
    engine_id: str | None
    model_id: str | None
    dataset_id: str | None

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        for key in ("created_at", "reviewed_at"):
            doc[key] = doc[key].isoformat() if doc[key] else None
        return doc


def _view(flag: Flag, answer: Answer | None) -> FlagView:
    return FlagView(
        flag_id=flag.flag_id,
        answer_id=flag.answer_id,
        status=flag.status,
        reason=flag.reason,
        correction=flag.correction,
        final_correction=flag.final_correction,
        agent=flag.agent,
        reviewer=flag.reviewer,
        review_note=flag.review_note,
        released_dataset_id=flag.released_dataset_id,
        created_at=flag.created_at,
        reviewed_at=flag.reviewed_at,
        similar_to=flag.similar_to,
        entry_question=flag.entry_question,
        question=answer.question if answer else "",
        answer=answer.answer if answer else "",
        engine_id=answer.engine_id if answer else None,
        model_id=answer.model_id if answer else None,
        dataset_id=answer.dataset_id if answer else None,
    )


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


async def flag_answer(
    sessions: async_sessionmaker,
    artifacts: ArtifactStore,
    *,
    answer_id: str,
    reason: str,
    agent: str,
    correction: str | None = None,
    similar_to: str | None = None,
    auto_approve: bool = False,
) -> FlagView:
    """Store a flag on ``answer_id`` and stage ``feedback.flagged``; 404 if the gateway never served that answer.

    ``similar_to`` (instead of a correction): the question is another wording of that knowledge entry, to be added
    to its similar questions once approved. With ``auto_approve`` a flag that carries a correction or names an
    entry is approved at once (the demo's setting).
    """
    reason_text = _text(reason)
    if reason_text is None:
        raise Invalid("invalid_request", "reason: a flag needs a reason")
    fix, entry_id = _text(correction), _text(similar_to)
    if fix is not None and entry_id is not None:
        raise Invalid("invalid_request", "similar_to: a flag either corrects the answer or names the entry, not both")
    async with sessions() as session, session.begin():
        answer = await session.get(Answer, answer_id)
        if answer is None:
            raise not_found("answer", answer_id)
        flag = Flag(
            flag_id=f"fl-{uuid.uuid4().hex}",
            answer_id=answer_id,
            reason=reason_text,
            correction=fix,
            similar_to=entry_id,
            agent=agent,
            status="open",
            created_at=utcnow(),
        )
        if entry_id is not None:
            await live.attachable(session, artifacts, answer, entry_id)  # 404 / 400 now, not at approval
        if auto_approve and (fix is not None or entry_id is not None):
            flag.status, flag.reviewer, flag.final_correction = "approved", AUTO_REVIEWER, fix
            flag.reviewed_at = utcnow()
        session.add(flag)
        if flag.status == "approved":
            await _go_live(session, artifacts, flag, answer)
        enqueue(
            session,
            FeedbackFlagged(flag_id=flag.flag_id, answer_id=answer_id, reason=reason_text, correction=fix, agent=agent),
        )
    FLAGS.labels(answer.engine_id).inc()
    return _view(flag, answer)


async def get_flag(sessions: async_sessionmaker, flag_id: str) -> FlagView:
    async with sessions() as session:
        row = (
            await session.execute(
                select(Flag, Answer)
                .outerjoin(Answer, Answer.answer_id == Flag.answer_id)
                .where(Flag.flag_id == flag_id)
            )
        ).first()
    if row is None:
        raise not_found("flag", flag_id)
    return _view(row[0], row[1])


async def list_flags(
    sessions: async_sessionmaker, *, status: str | None = None, limit: int = 100, offset: int = 0
) -> list[FlagView]:
    """Flags oldest first (a queue: the longest-waiting flag is reviewed first), optionally of one status."""
    if status is not None and status not in STATUSES:
        raise Invalid("invalid_request", f"status: must be one of {', '.join(STATUSES)}")
    query = select(Flag, Answer).outerjoin(Answer, Answer.answer_id == Flag.answer_id)
    if status is not None:
        query = query.where(Flag.status == status)
    query = query.order_by(Flag.created_at, Flag.flag_id).limit(limit).offset(offset)
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    return [_view(flag, answer) for flag, answer in rows]


async def review_flag(
    sessions: async_sessionmaker,
    artifacts: ArtifactStore,
    flag_id: str,
    *,
    action: Action,
    reviewer: str,
    correction: str | None = None,
    note: str | None = None,
) -> FlagView:
    """Approve (the agent's correction), edit (approve the reviewer's ``correction``) or reject a flag.

    A flag may be reviewed again until it is released; a released flag is part of a dataset and stays as it is.
    """
    async with sessions() as session, session.begin():
        # Locked so a release running now either sees this review or this review sees the flag released.
        flag = await session.get(Flag, flag_id, with_for_update=True)
        if flag is None:
            raise not_found("flag", flag_id)
        if flag.status == "released":
            raise Conflict("already_released", f"flag {flag_id} is already in dataset {flag.released_dataset_id}")
        if action == "approve":
            final = flag.correction
            if final is None and flag.similar_to is None:
                raise Invalid("correction_required", "this flag has no correction to approve; edit it")
        elif action == "edit":
            final = _text(correction)
            if final is None:
                raise Invalid("correction_required", "correction: an edit needs the corrected answer")
            if flag.similar_to is not None and flag.status == "approved":
                raise Conflict("similar_question_live", "reject the approved similar question before correcting")
            flag.similar_to = None  # an edited answer is a correction of the flagged answer, whatever was asked
        elif action == "reject":
            final = None
        else:
            raise Invalid("invalid_request", "action: must be approve, edit or reject")
        answer = await session.get(Answer, flag.answer_id)
        was_live = flag.status == "approved"
        flag.status = "rejected" if action == "reject" else "approved"
        flag.final_correction = final
        flag.reviewer = reviewer
        flag.review_note = _text(note)
        flag.reviewed_at = utcnow()
        # Approval puts the correction in the live knowledge base at once; rejecting a live one takes it out.
        if action != "reject":
            if not was_live or final is not None:  # approving an approved wording again changes nothing
                await _go_live(session, artifacts, flag, answer)
        elif was_live:
            await live.stage_withdrawal(session, artifacts, flag, answer)
    return _view(flag, answer)


async def _go_live(session: AsyncSession, artifacts: ArtifactStore, flag: Flag, answer: Answer | None) -> None:
    if flag.final_correction is None and flag.similar_to is not None:
        await live.stage_similar(session, artifacts, flag, answer)
    else:
        await live.stage_approval(session, artifacts, flag, answer)


@dataclass(frozen=True)
class Unanswered:
    """A question the gateway handed to a human (no knowledge entry was close enough), not yet flagged."""

    answer_id: str
    question: str
    confidence: float | None
    dataset_id: str | None
    created_at: datetime
    #: The kinds of fact asked (price, duration, count, opposite) that the closest entry never mentions: a figure
    #: to add to that entry, or (the opposite operation) an entry of its own. Empty: no entry covered the question.
    unspoken_kinds: tuple[str, ...] = ()


async def list_unanswered(sessions: async_sessionmaker, *, limit: int = 100) -> list[Unanswered]:
    """Handed-off questions nobody has answered yet, newest first: candidates for new FAQ entries. Answer-check
    hand-offs are not: their question has an entry, which the engine failed to answer from."""
    flagged = select(Flag.answer_id)
    query = (
        select(Answer)
        .where(Answer.handoff.is_(True), Answer.ungrounded.is_(False), Answer.answer_id.not_in(flagged))
        .order_by(Answer.created_at.desc())
        .limit(limit)
    )
    async with sessions() as session:
        rows = (await session.scalars(query)).all()
    return [
        Unanswered(a.answer_id, a.question, a.confidence, a.dataset_id, a.created_at, tuple(a.unspoken_kinds or ()))
        for a in rows
    ]


async def count_approved(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Flag).where(Flag.status == "approved")) or 0)
