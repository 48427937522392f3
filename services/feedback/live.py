"""Approved corrections go live: each approval records a knowledge-base change and announces ``knowledge.updated``.

Runs inside the review's transaction (with the outbox), so an approval and its live change commit together. What
changes: the answer's best reference is REPLACED by the correction (the entry keeps its id and question, so other
wordings of the same question get the fix too); a handed-off answer, which had no usable reference, becomes a NEW
entry under the customer's question. A rejection of an earlier approval restores the entry as the dataset had it.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.artifacts import ArtifactStore
from libs.common.events import KnowledgeUpdated
from libs.common.knowledge import Entry, entry_id_for, load_knowledge
from libs.common.outbox import enqueue
from libs.common.tables import Answer, Flag, KnowledgeUpdate, utcnow


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


async def _stage(session: AsyncSession, action: str, entry: Entry, flag_id: str) -> None:
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
        question = await _current_question(session, artifacts, answer.dataset_id, entry_id)
    if question is None:  # handed off, ungrounded, or the entry is gone: a new entry in the customer's words
        question = answer.question if answer is not None else ""
        entry_id, action = entry_id_for(question), "add"
    else:
        action = "replace"
    flag.entry_id, flag.entry_question = entry_id, question
    await _stage(session, action, Entry(entry_id, question, flag.final_correction), flag.flag_id)


async def stage_withdrawal(session: AsyncSession, artifacts: ArtifactStore, flag: Flag, answer: Answer | None) -> None:
    """An approved flag is rejected after all: its entry goes back to the dataset's text (or away, if it was new)."""
    if flag.entry_id is None or flag.entry_question is None:
        return
    original = await _dataset_entry(artifacts, answer.dataset_id if answer else None, flag.entry_id)
    if original is not None:
        await _stage(session, "replace", original, flag.flag_id)
    else:
        await _stage(session, "retire", Entry(flag.entry_id, flag.entry_question, ""), flag.flag_id)
    flag.entry_id = flag.entry_question = None
