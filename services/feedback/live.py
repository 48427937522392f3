"""Approved corrections go live: each approval records a knowledge-base change and announces ``knowledge.updated``.

Runs inside the review's transaction (with the outbox), so an approval and its live change commit together. What
changes: the answer's best reference is REPLACED by the correction (the entry keeps its id and question, so other
wordings of the same question get the fix too); a handed-off answer, which had no usable reference, becomes a NEW
entry under the customer's question; a flag that names an entry (``similar_to``) adds the customer's question to
that entry's similar questions. A rejection of an earlier approval restores the entry as the dataset had it.

A customer's question goes live PII-redacted (default rules, as the shadow replay's): a new entry's question and an
attached wording sit in every engine's prompt context and knowledge events; the next release redacts them again with
the dataset's own rules.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.artifacts import ArtifactStore
from libs.common.events import KnowledgeUpdated
from libs.common.knowledge import Entry, apply_update, entry_id_for, load_knowledge
from libs.common.outbox import enqueue
from libs.common.tables import Answer, Flag, KnowledgeUpdate, utcnow
from libs.datasets.cleaning import canonical_key, redact_customer_text
from services.feedback.errors import Invalid, NotFound, Unusable


async def _dataset_entry(artifacts: ArtifactStore, dataset_id: str | None, entry_id: str) -> Entry | None:
    if not dataset_id:
        return None
    entries = await asyncio.to_thread(load_knowledge, artifacts.path("datasets", dataset_id))
    return next((e for e in entries if e.entry_id == entry_id), None)


async def live_entries(session: AsyncSession, artifacts: ArtifactStore, dataset_id: str | None) -> list[Entry]:
    """A dataset version's knowledge with every live update replayed in order, as the gateway applies them."""
    entries = await asyncio.to_thread(load_knowledge, artifacts.path("datasets", dataset_id)) if dataset_id else []
    for row in await session.scalars(select(KnowledgeUpdate).order_by(KnowledgeUpdate.id)):
        entries = apply_update(entries, row.action, Entry(row.entry_id, row.question, row.answer))  # type: ignore[arg-type]
    return entries


async def attachable(session: AsyncSession, artifacts: ArtifactStore, answer: Answer, entry_id: str) -> Entry:
    """The entry ``answer``'s question may become a similar question of (as served now); 404 if the knowledge has
    no such entry, 400 if another entry already has that wording (one wording, one answer)."""
    entries = await live_entries(session, artifacts, answer.dataset_id)
    entry = next((e for e in entries if e.entry_id == entry_id), None)
    if entry is None:
        raise NotFound("entry_not_found", f"no knowledge entry {entry_id!r} in the answer's knowledge base")
    key = canonical_key(redact_customer_text(answer.question))
    for other in entries:
        if other.entry_id != entry_id and key in {canonical_key(q) for q in other.questions}:
            raise Invalid("wording_taken", f"similar_to: this question already asks entry {other.entry_id} "
                          f"({other.question}); a wording leads to one answer")  # fmt: skip
    return entry


async def _stage(session: AsyncSession, action: str, entry: Entry, flag_id: str) -> None:
    """Record and announce one change (for similar_*: ``entry.question`` is the wording, ``entry.answer`` "")."""
    row = KnowledgeUpdate(
        entry_id=entry.entry_id,
        action=action,
        question=entry.question,
        answer=entry.answer,
        flag_id=flag_id,
        created_at=utcnow(),
    )
    session.add(row)
    await session.flush()  # the row id orders updates for every replica
    enqueue(
        session,
        KnowledgeUpdated(
            entry_id=entry.entry_id,
            action=action,  # type: ignore[arg-type]
            question=entry.question,
            answer=entry.answer,
            update_id=row.id,
            flag_id=flag_id,
        ),
    )


async def stage_approval(session: AsyncSession, artifacts: ArtifactStore, flag: Flag, answer: Answer | None) -> None:
    """Record what the approved ``flag.final_correction`` changes (and on the flag: which entry it fixes)."""
    assert flag.final_correction is not None, "only an approved flag with a correction goes live"
    question = None
    # An answer-check hand-off (``ungrounded``) had the right entry; the correction replaces it like any answer's.
    if answer is not None and (not answer.handoff or answer.ungrounded) and answer.entry_ids:
        entry_id = str(answer.entry_ids[0])
        entries = await live_entries(session, artifacts, answer.dataset_id)
        question = next((e.question for e in entries if e.entry_id == entry_id), None)
    if question is None:  # handed off, ungrounded, or the entry is gone: a new entry in the customer's words
        question = redact_customer_text(answer.question) if answer is not None else ""
        entry_id, action = entry_id_for(question), "add"
    else:
        action = "replace"
    flag.entry_id, flag.entry_question = entry_id, question
    await _stage(session, action, Entry(entry_id, question, flag.final_correction), flag.flag_id)


async def stage_similar(session: AsyncSession, artifacts: ArtifactStore, flag: Flag, answer: Answer | None) -> None:
    """Approved: the customer's question becomes a similar question of entry ``flag.similar_to``, served at once
    (a ``similar_add`` of that wording: each gateway adds it to the entry its knowledge has under that id; the
    answer stays, still generated). ``flag.entry_id`` is set when the wording is live through this flag."""
    assert flag.similar_to is not None, "only a flag that names an entry"
    if answer is None:
        raise Unusable("answer_not_found", f"the answer of flag {flag.flag_id} is gone; its question is unknown")
    entry = await attachable(session, artifacts, answer, flag.similar_to)
    flag.entry_id, flag.entry_question = entry.entry_id, entry.question
    asked = redact_customer_text(answer.question)
    dataset = await _dataset_entry(artifacts, answer.dataset_id, entry.entry_id)
    if dataset is not None and asked in dataset.questions:
        flag.entry_id = None  # the FAQ itself asks it this way: nothing to add now, nothing to take off later
        return
    if asked not in entry.questions:
        await _stage(session, "similar_add", Entry(entry.entry_id, asked, ""), flag.flag_id)


async def _held_by_another(session: AsyncSession, flag: Flag, asked: str) -> bool:
    """Whether another approved or released flag attaches the same (redacted) wording to the same entry."""
    others = await session.scalars(
        select(Answer.question)
        .join(Flag, Answer.answer_id == Flag.answer_id)
        .where(
            Flag.similar_to == flag.similar_to,
            Flag.flag_id != flag.flag_id,
            Flag.status.in_(("approved", "released")),
            Flag.final_correction.is_(None),
        )
    )  # compared redacted: two customers' questions differing only in a phone number are one live wording
    return any(redact_customer_text(q) == asked for q in others)


async def stage_withdrawal(session: AsyncSession, artifacts: ArtifactStore, flag: Flag, answer: Answer | None) -> None:
    """An approved flag is rejected after all: its entry goes back to the dataset's text (or away, if it was new);
    a similar question it attached is taken off the entry again, unless another approved flag attaches it too."""
    if flag.similar_to is not None:
        asked = redact_customer_text(answer.question) if answer is not None else None
        if flag.entry_id is not None and asked is not None and not await _held_by_another(session, flag, asked):
            await _stage(session, "similar_remove", Entry(flag.similar_to, asked, ""), flag.flag_id)
        flag.entry_id = flag.entry_question = None
        return
    if flag.entry_id is None or flag.entry_question is None:
        return
    original = await _dataset_entry(artifacts, answer.dataset_id if answer else None, flag.entry_id)
    if original is not None:
        await _stage(session, "replace", original, flag.flag_id)
    else:
        await _stage(session, "retire", Entry(flag.entry_id, flag.entry_question, ""), flag.flag_id)
    flag.entry_id = flag.entry_question = None
