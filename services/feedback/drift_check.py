"""The question-drift check: load both samples, compare (``drift``), record the check, announce ``quality.drift``.

Runs daily in the feedback service (``DriftScheduler``), on demand through ``POST /v1/drift/check`` and
``kefu drift check``. Both samples are scored against the LIVE engine's dataset knowledge base, one yardstick for
both (stored per-answer confidences came from whichever engine and live overlay answered, so they are not reused).

Where a check is kept: every check, alerting or not, is a ``drift_checks`` row (``drift_history``), written in the
same transaction as a crossing check's ``quality.drift`` outbox row (``enqueue`` also journals that event in
``event_ledger``). The scheduler reads the newest row to skip a check another process just ran; ``kefu drift
history`` and ``kefu report`` read the series.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.artifacts import ArtifactStore
from libs.common.events import QualityDrift
from libs.common.knowledge import entry_id_for, load_knowledge
from libs.common.outbox import enqueue
from libs.common.retrieval import Retriever
from libs.common.tables import Answer, Deployment, Flag, utcnow
from services.feedback import drift, drift_history
from services.feedback.errors import Conflict, FeedbackError
from services.feedback.settings import Settings

log = logging.getLogger("kefu.feedback.drift")
MAX_QUESTIONS = 5000  # newest questions of a window scored at most (BM25 ~0.2 ms each: about a second)
MAX_REFERENCE = 2000  # training questions scored as the reference (leave-one-out costs O(entries) each)
_REFERENCE_SEED = 0


def thresholds(settings: Settings) -> drift.Thresholds:
    return drift.Thresholds(
        max_p_value=settings.feedback_drift_max_p_value,
        min_statistic=settings.feedback_drift_min_statistic,
        far_confidence=settings.feedback_drift_far_confidence,
        max_far_increase=settings.feedback_drift_max_far_increase,
        min_questions=settings.feedback_drift_min_questions,
    )


def training_questions(dataset_dir: Path) -> list[str]:
    path = Path(dataset_dir) / "train.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["instruction"] for r in rows if r.get("instruction")]


class Reference:
    """The live dataset's index and reference samples; built once per dataset.

    Each training question is scored against the knowledge base WITHOUT its own entry (an overlay that retires it:
    no re-indexing; its n-grams still count in the idf, a small optimism): a question on a trained topic whose
    exact entry does not help, which is how far real customers' wording sits from the FAQ (see the module doc of
    ``drift``). Up to ``MAX_REFERENCE`` questions, a seeded sample of larger datasets.
    """

    def __init__(self, dataset_dir: Path) -> None:
        self.retriever = Retriever(load_knowledge(dataset_dir))
        questions = training_questions(dataset_dir)
        if len(questions) > MAX_REFERENCE:
            questions = random.Random(_REFERENCE_SEED).sample(questions, MAX_REFERENCE)
        by_id = {e.entry_id: e for e in self.retriever.entries}
        self.confidence = []
        for q in questions:
            own = by_id.get(entry_id_for(q))
            without = self.retriever.updated([("retire", own)]) if own else self.retriever
            self.confidence.append(without.search(q, 1).confidence)
        self.length = [float(len(q)) for q in questions]

    def confidence_of(self, question: str) -> float:
        return self.retriever.search(question, 1).confidence


_cache: dict[str, Reference] = {}


async def _reference(artifacts: ArtifactStore, dataset_id: str) -> Reference:
    if dataset_id not in _cache:
        if not artifacts.path("datasets", dataset_id).is_dir():
            raise Conflict("dataset_missing", f"the live engine's dataset {dataset_id} is not in the store")
        ref = await asyncio.to_thread(Reference, artifacts.path("datasets", dataset_id))
        _cache.clear()  # one live dataset at a time: keep memory flat
        _cache[dataset_id] = ref
    return _cache[dataset_id]


async def _live(sessions: async_sessionmaker) -> Deployment:
    async with sessions() as session:
        live = await session.scalar(
            select(Deployment).where(Deployment.state == "live").order_by(Deployment.started_at.desc()).limit(1)
        )
    if live is None:
        raise Conflict("no_live_deployment", "no live engine: nothing to compare customers' questions with")
    return live


async def _window(sessions: async_sessionmaker, since: datetime, until: datetime) -> list[str]:
    async with sessions() as session:
        rows = await session.scalars(
            select(Answer.question)
            .where(Answer.created_at >= since, Answer.created_at < until, func.length(Answer.question) > 0)
            .order_by(Answer.created_at.desc())
            .limit(MAX_QUESTIONS)
        )
        return list(rows)


async def unanswered_clusters(
    sessions: async_sessionmaker, *, since: datetime, until: datetime | None = None, limit: int = 10
) -> list[dict[str, Any]]:
    """Top clusters of questions handed off to a person or flagged by an agent in [since, until)."""
    until = until or utcnow()
    flagged = select(Flag.answer_id).where(Flag.status != "rejected")
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Answer.answer_id, Answer.question, Answer.handoff, Answer.ungrounded, Answer.created_at)
                .where(
                    Answer.created_at >= since,
                    Answer.created_at < until,
                    # An answer-check hand-off had an entry (the engine failed it): not an unanswered question.
                    or_(and_(Answer.handoff.is_(True), Answer.ungrounded.is_(False)), Answer.answer_id.in_(flagged)),
                )
                .order_by(Answer.created_at.desc())
                .limit(MAX_QUESTIONS)
            )
        ).all()
        flagged_ids = set(await session.scalars(flagged.where(Flag.answer_id.in_([r.answer_id for r in rows]))))
    items = [
        {
            "answer_id": r.answer_id,
            "question": r.question,
            "handoff": bool(r.handoff and not r.ungrounded),
            "flagged": r.answer_id in flagged_ids,
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
        if r.question and r.question.strip()
    ]
    clusters = await asyncio.to_thread(drift.cluster_questions, items)
    return [c.to_json() for c in clusters[:limit]]


async def run_check(
    sessions: async_sessionmaker,
    artifacts: ArtifactStore,
    settings: Settings,
    *,
    now: datetime | None = None,
    trigger: str = "manual",
) -> dict[str, Any]:
    """One check of the last window against the live engine's training questions; returns its record."""
    until = now or utcnow()
    since = until - timedelta(hours=settings.feedback_drift_window_hours)
    live = await _live(sessions)
    ref = await _reference(artifacts, live.dataset_id)
    questions = await _window(sessions, since, until)
    confidence = await asyncio.to_thread(lambda: [ref.confidence_of(q) for q in questions])
    result = drift.compare(
        confidence, ref.confidence, [float(len(q)) for q in questions], ref.length, thresholds(settings)
    )
    clusters = await unanswered_clusters(sessions, since=since, until=until, limit=5)
    record: dict[str, Any] = {
        "check_id": uuid.uuid4().hex,
        "checked_at": utcnow().isoformat(),
        "trigger": trigger,
        "engine_id": live.engine_id,
        "dataset_id": live.dataset_id,
        "window_start": since.isoformat(),
        "window_end": until.isoformat(),
        "questions": len(questions),
        "reference_questions": len(ref.confidence),
        "reference": "training questions: confidence without their own entry (leave-one-out), length as is",
        **result.to_json(),
        "clusters": clusters,
        "event_id": None,
    }
    event = None
    if result.drifted:
        event = QualityDrift(
            check_id=record["check_id"],
            engine_id=live.engine_id,
            dataset_id=live.dataset_id,
            window_start=since,
            window_end=until,
            questions=len(questions),
            reference_questions=len(ref.confidence),
            crossed=result.crossed,
            figures=result.figures,
            clusters=clusters,
        )
        record["event_id"] = event.event_id
        log.warning("question drift on %s: %s", live.engine_id, "; ".join(result.crossed))
    async with sessions() as session, session.begin():  # the history row and the alert commit together
        drift_history.add_check(session, record, thresholds(settings))
        if event is not None:
            enqueue(session, event)
    return record


class DriftScheduler:
    """Runs the check every ``feedback_drift_interval_seconds``; a check any process ran within the interval (per
    the shared history) counts, so replicas and restarts do not repeat it."""

    def __init__(self, sessions: async_sessionmaker, artifacts: ArtifactStore, settings: Settings, kick) -> None:  # type: ignore[no-untyped-def]
        self.sessions, self.artifacts, self.settings, self.kick = sessions, artifacts, settings, kick
        self.lock = asyncio.Lock()
        self.started = utcnow()

    async def check(self, trigger: str = "manual") -> dict[str, Any]:
        async with self.lock:
            record = await run_check(self.sessions, self.artifacts, self.settings, trigger=trigger)
        if record["event_id"]:
            self.kick()
        return record

    async def _due_in(self) -> float:
        interval = self.settings.feedback_drift_interval_seconds
        # Never checked: a full interval from start, not a check on every (re)start.
        last = await drift_history.last_checked_at(self.sessions) or self.started
        return max(0.0, interval - (utcnow() - last).total_seconds())

    async def run(self) -> None:
        interval = self.settings.feedback_drift_interval_seconds
        if not interval:
            return
        while True:
            wait = await self._due_in()
            if wait > 0:
                await asyncio.sleep(min(wait, interval))
                continue
            try:
                await self.check(trigger="schedule")
            except FeedbackError as exc:  # nothing live yet: try again next interval
                log.info("drift check skipped: %s", exc.message)
                await asyncio.sleep(interval)
            except Exception:
                log.exception("drift check failed; retried next interval")
                await asyncio.sleep(interval)
