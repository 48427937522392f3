"""Approved corrections go live: each approval records a knowledge-base change and announces ``knowledge.updated``.

Runs inside the review's transaction (with the outbox), so an approval and its live change commit together. What
changes: the answer's best reference is REPLACED by the correction (the entry keeps its id and question, so other
wordings of the same question get the fix too); a handed-off answer, which had no usable reference, becomes a NEW
entry under the customer's question; a flag that names an entry (``similar_to``) adds the customer's question to
that entry's similar questions. A rejection of an earlier approval restores the entry as the dataset had it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.artifacts import ArtifactStore
from libs.common.events import KnowledgeUpdated
from libs.common.knowledge import Entry, entry_id_for, load_knowledge
from libs.common.outbox import enqueue
from libs.common.tables import Answer, Flag, KnowledgeUpdate, utcnow
from services.feedback.errors import Unusable


async def _dataset_entry(artifacts: ArtifactStore, dataset_id: str | None, entry_id: str) -> Entry | None:
    if not dataset_id:
        return None
    entries = await asyncio.to_thread(load_knowledge, artifacts.path("datasets", dataset_id))
    return next((e for e in entries if e.entry_id == entry_id), None)


async def _current_question(
    session: AsyncSession, artifacts: ArtifactStore, dataset_id: str | None, entry_id: str
) -> str | None:
    """The question heading ``entry_id`` now: from the newest live update of it, else from the dataset."""
    live = await session.scalar(
        select(KnowledgeUpdate.question)
        .where(KnowledgeUpdate.entry_id == entry_id)
        .order_by(KnowledgeUpdate.id.desc())
        .limit(1)
    )
    if live is not None:
        return live
    found = await _dataset_entry(artifacts, dataset_id, entry_id)
    return found.question if found else None


async def current_entry(
    session: AsyncSession, artifacts: ArtifactStore, dataset_id: str | None, entry_id: str
) -> Entry | None:
    """The entry as served now: the dataset's, with the newest live update of it over it (a retirement: None)."""
    entry = await _dataset_entry(artifacts, dataset_id, entry_id)
    live = await session.scalar(
        select(KnowledgeUpdate).where(KnowledgeUpdate.entry_id == entry_id).order_by(KnowledgeUpdate.id.desc()).limit(1)
    )
    if live is None:
        return entry
    if live.action == "retire":
        return None
    similar = live.similar if live.similar is not None else (entry.similar if entry else ())
    return Entry(entry_id, live.question, live.answer, tuple(similar))


async def _stage(session: AsyncSession, action: str, entry: Entry, flag_id: str, *, wordings: bool = False) -> None:
    """Record and announce one change; ``wordings``: it changes the similar questions (else they stay)."""
    similar = list(entry.similar) if wordings else None
    row = KnowledgeUpdate(
        entry_id=entry.entry_id,
        action=action,
        question=entry.question,
        answer=entry.answer,
        similar=similar,
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
            similar=similar,
        ),
    )


async def stage_approval(session: AsyncSession, artifacts: ArtifactStore, flag: Flag, answer: Answer | None) -> None:
    """Record what the approved ``flag.final_correction`` changes (and on the flag: which entry it fixes)."""
    assert flag.final_correction is not None, "only an approved flag with a correction goes live"
    question = None
    # An answer-check hand-off (``ungrounded``) had the right entry; the correction replaces it like any answer's.
    if answer is not None and (not answer.handoff or answer.ungrounded) and answer.entry_ids:
        entry_id = str(answer.entry_ids[0])
        question = await _current_question(session, artifacts, answer.dataset_id, entry_id)
    if question is None:  # handed off, ungrounded, or the entry is gone: a new entry in the customer's words
        question = answer.question if answer is not None else ""
        entry_id, action = entry_id_for(question), "add"
    else:
        action = "replace"
    flag.entry_id, flag.entry_question = entry_id, question
    await _stage(session, action, Entry(entry_id, question, flag.final_correction), flag.flag_id)


async def stage_similar(session: AsyncSession, artifacts: ArtifactStore, flag: Flag, answer: Answer | None) -> None:
    """Approved: the customer's question becomes a similar question of entry ``flag.similar_to``, served at once
    (the answer stays; the engine keeps generating it)."""
    assert flag.similar_to is not None, "only a flag that names an entry"
    if answer is None:
        raise Unusable("answer_not_found", f"the answer of flag {flag.flag_id} is gone; its question is unknown")
    entry = await current_entry(session, artifacts, answer.dataset_id, flag.similar_to)
    if entry is None:
        raise Unusable("entry_not_found", f"entry {flag.similar_to} is not in the live knowledge base")
    if answer.question not in entry.questions:
        entry = replace(entry, similar=(*entry.similar, answer.question))
    flag.entry_id, flag.entry_question = entry.entry_id, entry.question
    await _stage(session, "replace", entry, flag.flag_id, wordings=True)


async def stage_withdrawal(session: AsyncSession, artifacts: ArtifactStore, flag: Flag, answer: Answer | None) -> None:
    """An approved flag is rejected after all: its entry goes back to the dataset's text (or away, if it was new);
    a similar question it attached is taken off the entry again."""
    if flag.entry_id is None or flag.entry_question is None:
        return
    if flag.similar_to is not None and answer is not None:
        entry = await current_entry(session, artifacts, answer.dataset_id, flag.similar_to)
        if entry is not None:
            kept = tuple(q for q in entry.similar if q != answer.question)
            await _stage(session, "replace", replace(entry, similar=kept), flag.flag_id, wordings=True)
        flag.entry_id = flag.entry_question = None
        return
    original = await _dataset_entry(artifacts, answer.dataset_id if answer else None, flag.entry_id)
    if original is not None:
        await _stage(session, "replace", original, flag.flag_id)
    else:
        await _stage(session, "retire", Entry(flag.entry_id, flag.entry_question, ""), flag.flag_id)
    flag.entry_id = flag.entry_question = None
