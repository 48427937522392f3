"""``kefu lineage ID``: dataset → run → model → engine → deployment, failed runs, and the flags behind the dataset.

ID may name a dataset, a model, an engine, a flag or an answer; each resolves to the dataset it descends from.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.common.events import Topic
from libs.common.tables import Answer, Dataset, Deployment, Engine, EventLedger, Flag, Model
from services.feedback.errors import NotFound

MAX_ANCESTORS = 50  # parent chains are short; the cap only guards against a cycle written by hand


async def _resolve(session: AsyncSession, ident: str) -> tuple[str, str | None]:
    """(kind, dataset id) of ``ident``; raises if nothing has that id."""
    if await session.get(Dataset, ident) is not None:
        return "dataset", ident
    if (model := await session.get(Model, ident)) is not None:
        return "model", model.dataset_id
    if (engine := await session.get(Engine, ident)) is not None:
        return "engine", engine.dataset_id
    if (flag := await session.get(Flag, ident)) is not None:
        if flag.released_dataset_id:
            return "flag", flag.released_dataset_id
        answer = await session.get(Answer, flag.answer_id)
        return "flag", answer.dataset_id if answer else None
    if (answer := await session.get(Answer, ident)) is not None:
        return "answer", answer.dataset_id
    raise NotFound("not_found", f"no dataset, model, engine, flag or answer has id {ident!r}")


async def collect_lineage(sessions: async_sessionmaker, ident: str) -> dict[str, Any]:
    """The lineage of ``ident`` as plain JSON values."""
    async with sessions() as session:
        kind, dataset_id = await _resolve(session, ident)
        doc: dict[str, Any] = {"query": ident, "kind": kind, "dataset_id": dataset_id, "dataset": None}
        doc.update(ancestors=[], models=[], failures=[], flags=[])
        if dataset_id is None:
            return doc
        dataset = await session.get(Dataset, dataset_id)
        if dataset is not None:
            doc["dataset"] = {"source": dataset.source, "parent": dataset.parent_dataset_id, "counts": dataset.counts}
        parent = dataset.parent_dataset_id if dataset else None
        while parent and len(doc["ancestors"]) < MAX_ANCESTORS:
            row = await session.get(Dataset, parent)
            doc["ancestors"].append({"dataset_id": parent, "source": row.source if row else None})
            parent = row.parent_dataset_id if row else None
        for model in (await session.scalars(select(Model).where(Model.dataset_id == dataset_id))).all():
            engines = []
            for engine in (await session.scalars(select(Engine).where(Engine.model_id == model.model_id))).all():
                deployments = (
                    await session.scalars(
                        select(Deployment).where(Deployment.engine_id == engine.engine_id).order_by(Deployment.id)
                    )
                ).all()
                engines.append(
                    {
                        "engine_id": engine.engine_id,
                        "triton": f"{engine.triton_model} v{engine.triton_version}",
                        "precision": engine.precision,
                        "passed_gate": engine.passed_gate,
                        "deployments": [
                            {
                                "id": d.id,
                                "state": d.state,
                                "traffic_percent": d.traffic_percent,
                                "started_at": d.started_at.isoformat(),
                            }
                            for d in deployments
                        ],
                    }
                )
            doc["models"].append(
                {"model_id": model.model_id, "run_id": model.run_id, "metrics": model.metrics, "engines": engines}
            )
        # A run that crashed or missed the trainer's quality gate has no models row: only its model.failed event.
        failed = await session.scalars(
            select(EventLedger)
            .where(EventLedger.topic == Topic.MODEL_FAILED.value, EventLedger.key == dataset_id)
            .order_by(EventLedger.occurred_at)
        )
        doc["failures"] = [
            {
                "run_id": e.payload.get("run_id"),
                "reason": e.payload.get("reason", ""),
                "missed": e.payload.get("missed", []),
                "metrics": e.payload.get("metrics", {}),
                "occurred_at": e.occurred_at.isoformat(),
            }
            for e in failed.all()
        ]
        flag_ids = list(dataset.flag_ids or []) if dataset else []
        flags = await session.execute(
            select(Flag, Answer.question)
            .outerjoin(Answer, Answer.answer_id == Flag.answer_id)
            .where(or_(Flag.flag_id.in_(flag_ids), Flag.released_dataset_id == dataset_id))
            .order_by(Flag.created_at)
        )
        doc["flags"] = [
            {
                "flag_id": f.flag_id,
                "status": f.status,
                "question": q,
                "correction": f.final_correction,
                "agent": f.agent,
            }
            for f, q in flags.all()
        ]
    return doc


def format_lineage(doc: dict[str, Any]) -> list[str]:
    """Human-readable lines, one level of indentation per step down the chain."""
    if doc["dataset_id"] is None:
        return [f"{doc['kind']} {doc['query']}: not linked to any dataset"]
    ds = doc["dataset"]
    counts = ", ".join(f"{k} {v}" for k, v in (ds or {}).get("counts", {}).items())
    lines = [
        f"dataset {doc['dataset_id']}" + (f" ({ds['source']}; {counts})" if ds else " (not in the datasets table)")
    ]
    lines += [f"  ↑ parent {a['dataset_id']} ({a['source'] or 'unknown'})" for a in doc["ancestors"]]
    failures = doc.get("failures", [])
    if not doc["models"] and not failures:
        lines.append("  no model trained on it yet")
    for m in doc["models"]:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(m["metrics"].items()) if isinstance(v, int | float))
        lines.append(f"  run {m['run_id'] or '-'} → model {m['model_id']}" + (f" ({metrics})" if metrics else ""))
        if not m["engines"]:
            lines.append("    no engine built yet")
        for e in m["engines"]:
            gate = "gate passed" if e["passed_gate"] else "gate FAILED"
            lines.append(f"    engine {e['engine_id']} ({e['precision']}, {e['triton']}, {gate})")
            if not e["deployments"]:
                lines.append("      never deployed")
            for d in e["deployments"]:
                lines.append(
                    f"      deployment #{d['id']} {d['state']} {d['traffic_percent']:g}% since {d['started_at']}"
                )
    for f in failures:
        run = f"  run {f['run_id'] or '-'} → "
        if f["missed"]:
            lines.append(run + "model FAILED the quality gate (not announced)")
            lines += [f"    missed {miss}" for miss in f["missed"]]
        else:
            lines.append(run + f"training FAILED: {f['reason'][:200]}")
    lines.append(f"flags behind {doc['dataset_id']}: {len(doc['flags'])}")
    for f in doc["flags"]:
        lines.append(f"  {f['flag_id']} [{f['status']}] {f['question']!r} → {f['correction']!r} (by {f['agent']})")
    return lines
