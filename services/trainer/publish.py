"""Record a trained model and announce it: artifact store + ``models`` row + ``model.trained`` (outbox); a model
that missed the quality gate is announced as ``model.failed`` instead and recorded nowhere."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.artifacts import ArtifactStore
from libs.common.db import open_database
from libs.common.events import ModelFailed, ModelTrained
from libs.common.outbox import enqueue, flush_outbox
from libs.common.tables import Model
from services.trainer.settings import Settings
from services.trainer.sft import TrainResult


async def record_model(session: AsyncSession, artifacts: ArtifactStore, result: TrainResult) -> ModelTrained | None:
    """Store the model dir under its content id and stage ``model.trained``; None if this model was recorded."""
    await asyncio.to_thread(artifacts.put_dir, "models", result.model_dir, result.model_id)
    if await session.get(Model, result.model_id) is not None:
        return None
    event = ModelTrained(
        model_id=result.model_id,
        dataset_id=result.dataset_id,
        run_id=result.run_id,
        uri=artifacts.uri("models", result.model_id),
        base_model=result.base_model,
        metrics={k: float(v) for k, v in result.metrics.items()},
        chat_template_sha256=result.chat_template_sha256,
    )
    session.add(
        Model(
            model_id=result.model_id,
            dataset_id=result.dataset_id,
            run_id=result.run_id,
            uri=event.uri,
            base_model=result.base_model,
            metrics=event.metrics,
            chat_template_sha256=result.chat_template_sha256,
        )
    )
    enqueue(session, event)
    return event


def gate_failure(result: TrainResult, dataset_id: str | None = None) -> ModelFailed:
    """``model.failed`` for a run that trained but missed the quality gate: the reason names every miss, and the
    metrics and misses travel as fields for subscribers (and ``kefu lineage``)."""
    return ModelFailed(
        dataset_id=dataset_id or result.dataset_id,
        reason=("quality gate: " + "; ".join(result.missed))[:2000],
        run_id=result.run_id,
        metrics={k: float(v) for k, v in result.metrics.items()},
        missed=list(result.missed),
    )


def publish_failure(result: TrainResult) -> None:
    """What ``kefu train`` (without --offline) calls when the model missed the gate: the same outbox path."""
    settings = Settings()

    async def run() -> None:
        async with open_database(settings) as sessions:
            async with sessions() as session, session.begin():
                enqueue(session, gate_failure(result))
            sent = await flush_outbox(settings, sessions, client="trainer-cli")
            print(f"model.failed for {result.dataset_id} {'published' if sent else 'queued in the outbox'}")

    asyncio.run(run())


def publish_model(model_dir: Path, result: TrainResult) -> None:
    """What ``kefu train`` (without --offline) calls after training."""
    settings = Settings()

    async def run() -> None:
        async with open_database(settings) as sessions:
            async with sessions() as session, session.begin():
                event = await record_model(session, ArtifactStore(settings.home), result)
            if event is None:
                print(f"model {result.model_id} was already recorded")
                return
            sent = await flush_outbox(settings, sessions, client="trainer-cli")
            print(f"model.trained for {result.model_id} {'published' if sent else 'queued in the outbox'}")

    asyncio.run(run())
