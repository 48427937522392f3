"""The drift-check history: every check (daily job, API, CLI) as a ``drift_checks`` row, and reads of it.

The row is staged in the same transaction as a crossing check's ``quality.drift`` outbox row, so the history and
the alert never disagree. The scheduler reads the newest row to skip a check another replica just ran.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.common.tables import DriftCheck
from services.feedback import drift


def add_check(session: AsyncSession, record: dict[str, Any], thresholds: drift.Thresholds) -> None:
    """Stage ``record`` (as ``run_check`` builds it) as a row; the caller commits."""
    session.add(
        DriftCheck(
            check_id=record["check_id"],
            checked_at=datetime.fromisoformat(record["checked_at"]),
            trigger=record["trigger"][:16],
            engine_id=record["engine_id"],
            dataset_id=record["dataset_id"],
            window_start=datetime.fromisoformat(record["window_start"]),
            window_end=datetime.fromisoformat(record["window_end"]),
            questions=record["questions"],
            reference_questions=record["reference_questions"],
            figures=record["figures"],
            thresholds=asdict(thresholds),
            crossed=record["crossed"],
            judged=record["judged"],
            drifted=record["drifted"],
            clusters=record["clusters"],
            event_id=record["event_id"],
        )
    )


async def last_checked_at(sessions: async_sessionmaker) -> datetime | None:
    async with sessions() as session:
        return await session.scalar(select(func.max(DriftCheck.checked_at)))


def to_json(row: DriftCheck) -> dict[str, Any]:
    """A row as a flat summary: the KS statistic and p-value of each measure lifted out of ``figures``."""
    figures = row.figures or {}
    conf, length, far = (figures.get(k) or {} for k in ("confidence", "length", "far_share"))
    return {
        "check_id": row.check_id,
        "checked_at": row.checked_at.isoformat(),
        "trigger": row.trigger,
        "engine_id": row.engine_id,
        "dataset_id": row.dataset_id,
        "window_start": row.window_start.isoformat(),
        "window_end": row.window_end.isoformat(),
        "questions": row.questions,
        "reference_questions": row.reference_questions,
        "confidence_ks": conf.get("ks_statistic"),
        "confidence_p": conf.get("ks_p_value"),
        "length_ks": length.get("ks_statistic"),
        "length_p": length.get("ks_p_value"),
        "far_share": far.get("current"),
        "far_share_reference": far.get("reference"),
        "thresholds": row.thresholds or {},
        "crossed": row.crossed or [],
        "judged": row.judged,
        "drifted": row.drifted,
        "clusters": [{k: c.get(k) for k in ("question", "count", "handed_off", "flagged")} for c in row.clusters or []],
        "event_id": row.event_id,
    }


async def recent(
    sessions: async_sessionmaker, *, limit: int = 20, since: datetime | None = None
) -> list[dict[str, Any]]:
    """The newest ``limit`` checks (since ``since``), newest first."""
    stmt = select(DriftCheck).order_by(DriftCheck.checked_at.desc()).limit(limit)
    if since is not None:
        stmt = stmt.where(DriftCheck.checked_at >= since)
    async with sessions() as session:
        return [to_json(row) for row in (await session.scalars(stmt)).all()]
