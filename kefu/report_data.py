"""What ``kefu report`` shows, read from where it lives: MLflow (training runs) and the database (models, answers,
flags, deployments, drift checks). Plain dicts and lists, so the page and its plots need neither MLflow nor
SQLAlchemy."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.tables import Answer, Deployment, Flag, Model, utcnow
from services.feedback import drift_history

#: Why an answer was handed off, as ``engine_rates`` counts it.
HANDOFF_REASONS = ("low_coverage", "unspoken_kind", "answer_check")
EVAL_METRICS = ("train_exact_match", "paraphrase_exact_match", "handoff_rate_in_scope")
_WHEN = "%Y-%m-%d %H:%M"  # UTC, as the page says
MAX_ANSWERS = 200_000  # newest answers aggregated at most (a month of a busy bot; minutes of SQL otherwise)


def _mlflow_store_exists(uri: str) -> bool:
    """A SQLite tracking URI that points at no file means no runs yet (and MLflow would create the file)."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).is_file()
    return True


def training_runs(tracking_uri: str, limit: int = 5) -> list[dict[str, Any]]:
    """The newest ``limit`` MLflow runs that logged a ``loss`` history (tuning children included), oldest first:
    name, id, start time, the loss per step, and their final metrics."""
    if not _mlflow_store_exists(tracking_uri):
        return []
    from mlflow.tracking import MlflowClient  # imported here: a second or two, only for this command

    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    runs = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=200)
    out = []
    for run in runs:
        if "loss" not in run.data.metrics:
            continue
        history = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: (m.step, m.timestamp))
        out.append(
            {
                "run_id": run.info.run_id,
                "name": run.info.run_name or run.info.run_id[:8],
                "started": datetime.fromtimestamp(run.info.start_time / 1000, UTC).strftime(_WHEN),
                "status": run.info.status,
                "loss": [(m.step, m.value) for m in history],
                "metrics": {k: v for k, v in run.data.metrics.items() if k in EVAL_METRICS},
            }
        )
        if len(out) == limit:
            break
    return out[::-1]


async def model_versions(sessions: async_sessionmaker, limit: int = 10) -> list[dict[str, Any]]:
    """The newest ``limit`` trained models (oldest first) with their evaluation metrics."""
    async with sessions() as session:
        rows = (await session.scalars(select(Model).order_by(Model.created_at.desc()).limit(limit))).all()
    return [
        {
            "model_id": m.model_id,
            "dataset_id": m.dataset_id,
            "run_id": m.run_id,
            "created": m.created_at.strftime(_WHEN),
            "metrics": {k: float(m.metrics[k]) for k in EVAL_METRICS if k in (m.metrics or {})},
        }
        for m in reversed(rows)
    ]


async def engine_rates(sessions: async_sessionmaker, days: int = 30, now: datetime | None = None) -> dict[str, Any]:
    """Per engine and UTC day: answers, hand-off rate and flag rate (answers an agent flagged / answers); per engine,
    why its answers were handed off (``handoffs``): low retrieval coverage, a price/duration/count or the opposite
    operation the best entry never gives (``unspoken_kind``: a figure for that entry, or an entry of its own), or
    the answer check (the engine's answer was not drawn from its references)."""
    since = (now or utcnow()) - timedelta(days=days)
    async with sessions() as session:
        rows = (
            await session.execute(
                select(
                    Answer.answer_id,
                    Answer.engine_id,
                    Answer.created_at,
                    Answer.handoff,
                    Answer.ungrounded,
                    Answer.unspoken_kinds,
                )
                .where(Answer.created_at >= since)
                .order_by(Answer.created_at.desc())
                .limit(MAX_ANSWERS)
            )
        ).all()
        flagged = set(await session.scalars(select(Flag.answer_id).where(Flag.created_at >= since)))
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])  # answers, handed off, flagged
    why: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        if r.handoff:
            reason = "answer_check" if r.ungrounded else "unspoken_kind" if r.unspoken_kinds else "low_coverage"
            why[r.engine_id or "?"][reason] += 1
        cell = cells[(r.engine_id or "?", r.created_at.date().isoformat())]
        cell[0] += 1
        cell[1] += bool(r.handoff)
        cell[2] += r.answer_id in flagged
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (engine, day), (n, handed, flags) in sorted(cells.items(), key=lambda kv: kv[0][1]):
        series[engine].append({"day": day, "answers": n, "handoff_rate": handed / n, "flag_rate": flags / n})
    totals = {
        engine: {
            "answers": sum(p["answers"] for p in points),
            "handoff_rate": sum(p["handoff_rate"] * p["answers"] for p in points) / sum(p["answers"] for p in points),
            "flag_rate": sum(p["flag_rate"] * p["answers"] for p in points) / sum(p["answers"] for p in points),
            "handoffs": {reason: why[engine][reason] for reason in HANDOFF_REASONS},
        }
        for engine, points in series.items()
    }
    return {"since": since.date().isoformat(), "series": dict(series), "totals": totals}


_SIDE_FIGURES = ("char_f1", "handoff_rate", "corrections_honoured", "errors", "ms_per_token_p50")


async def canary_decisions(sessions: async_sessionmaker, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` deployments (newest first): state, why, and the shadow replay's canary-vs-live figures."""
    async with sessions() as session:
        rows = (await session.scalars(select(Deployment).order_by(Deployment.started_at.desc()).limit(limit))).all()
    out = []
    for d in rows:
        evidence = d.evidence or {}
        out.append(
            {
                "engine_id": d.engine_id,
                "state": d.state,
                "traffic_percent": d.traffic_percent,
                "previous_engine_id": d.previous_engine_id,
                "started": d.started_at.strftime(_WHEN),
                "ended": d.ended_at.strftime(_WHEN) if d.ended_at else None,
                "reason": d.reason or "",
                "held": bool(d.held),
                "replayed": evidence.get("n"),
                "latency_ratio_p50": evidence.get("latency_ratio_p50"),
                "canary": {k: (evidence.get("canary") or {}).get(k) for k in _SIDE_FIGURES},
                "live": {k: (evidence.get("live") or {}).get(k) for k in _SIDE_FIGURES},
            }
        )
    return out


async def drift_series(
    sessions: async_sessionmaker, days: int = 30, now: datetime | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    """Every drift check of the last ``days`` (oldest first): its KS statistics, p-values, far share, verdict."""
    since = (now or utcnow()) - timedelta(days=days)
    checks = await drift_history.recent(sessions, limit=limit, since=since)
    for check in checks:
        check["when"] = datetime.fromisoformat(check["checked_at"]).strftime(_WHEN)
    return checks[::-1]
