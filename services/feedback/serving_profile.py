"""The serving profile: what real traffic looked like, snapshotted into each released dataset version for the trainer.

The trainer never reads the answer log (the gateway's table; feedback's reads of it are deliberate, see
``libs.common.tables``). Instead every release writes ``serving_profile.json`` beside ``train.jsonl``: the question
length percentiles (characters: the tokenizer may change with the next base), the prompt+answer token
percentiles as the serving model counted them, the hand-off rate, and the top clusters of handed-off or flagged
questions. It travels with the version through ``dataset.ready`` like the rows do, and freezes what the next model
was tuned for: training the same version again makes the same choices.

Customer wording is PII-redacted here (it leaves the answer log for the artifact store and MLflow), and answer ids
are dropped (they mean nothing outside this database).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.tables import Answer, utcnow
from libs.datasets.cleaning import redact_customer_text
from services.feedback import drift_check

PROFILE_FILE = "serving_profile.json"  # the trainer reads the same name (services/trainer/serving_profile.py)
SCHEMA_VERSION = 1
WINDOW_DAYS = 30.0  # a month: enough answers for a p99, recent enough to be today's traffic
MAX_ANSWERS = 50_000  # newest answers of the window summarised at most
TOP_CLUSTERS = 10


def percentiles(values: Sequence[int]) -> dict[str, int]:
    """count, max and the nearest-rank 50/90/95/99th percentiles (an observed value, which a budget must cover)."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    ranks = {q: max(1, math.ceil(q / 100 * len(ordered))) for q in (50, 90, 95, 99)}
    return {"count": len(ordered), "max": ordered[-1], **{f"p{q}": ordered[r - 1] for q, r in ranks.items()}}


def redact_cluster(cluster: dict[str, Any]) -> dict[str, Any]:
    """A cluster as it may leave the database: counts and redacted wordings, no answer ids."""
    examples = list(dict.fromkeys(redact_customer_text(q) for q in cluster.get("examples") or []))
    return {
        "question": redact_customer_text(cluster["question"]),
        "count": cluster["count"],
        "handed_off": cluster["handed_off"],
        "flagged": cluster["flagged"],
        "examples": examples,
    }


async def collect(
    sessions: async_sessionmaker, *, until: datetime | None = None, days: float = WINDOW_DAYS
) -> dict[str, Any]:
    """The profile of the answers logged in the last ``days`` before ``until``."""
    until = until or utcnow()
    since = until - timedelta(days=days)
    async with sessions() as session:
        rows = (
            await session.execute(
                select(
                    func.length(Answer.question).label("chars"),
                    Answer.prompt_tokens,
                    Answer.completion_tokens,
                    Answer.handoff,
                    Answer.status,
                    Answer.model_id,
                )
                .where(Answer.created_at >= since, Answer.created_at < until)
                .order_by(Answer.created_at.desc())
                .limit(MAX_ANSWERS)
            )
        ).all()
    # Token counts only where the model generated: a hand-off or an error has no prompt+answer sequence.
    generated = [r for r in rows if r.status == "ok" and not r.handoff and (r.prompt_tokens or 0) > 0]
    clusters = await drift_check.unanswered_clusters(sessions, since=since, until=until, limit=TOP_CLUSTERS)
    return {
        "schema_version": SCHEMA_VERSION,
        "created_at": utcnow().isoformat(),
        "window_start": since.isoformat(),
        "window_end": until.isoformat(),
        "answers": len(rows),
        "handoff_rate": sum(bool(r.handoff) for r in rows) / len(rows) if rows else 0.0,
        "question_chars": percentiles([int(r.chars or 0) for r in rows if r.chars]),
        "sequence_tokens": percentiles([r.prompt_tokens + r.completion_tokens for r in generated]),
        # Whose tokenizer counted sequence_tokens: comparable only for a model with the same tokenizer.
        "token_models": sorted({r.model_id for r in generated if r.model_id}),
        "unanswered_clusters": [redact_cluster(c) for c in clusters],
    }


def write(dataset_dir: Path, profile: dict[str, Any]) -> Path:
    path = Path(dataset_dir) / PROFILE_FILE
    path.write_text(json.dumps(profile, ensure_ascii=False, indent=2), encoding="utf-8")
    return path
