"""Record a built engine and announce it: ``engines`` row + ``engine.built`` (outbox)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.db import open_database
from libs.common.events import EngineBuilt
from libs.common.outbox import enqueue, flush_outbox
from libs.common.tables import Engine
from services.builder.build import BuildResult
from services.builder.settings import Settings


async def record_engine(session: AsyncSession, result: BuildResult) -> EngineBuilt | None:
    """Stage ``engine.built`` for a gated engine; None if this engine id was recorded before."""
    if await session.get(Engine, result.engine_id) is not None:
        return None
    quality = {
        k: (float(v) if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in result.quality.items()
    }
    event = EngineBuilt(
        engine_id=result.engine_id,
        model_id=result.model_id,
        dataset_id=result.dataset_id,
        triton_model=result.triton_model,
        triton_version=result.triton_version,
        precision=result.precision,  # type: ignore[arg-type]
        quality=quality,
        passed_gate=result.passed_gate,
    )
    session.add(
        Engine(
            engine_id=result.engine_id,
            model_id=result.model_id,
            dataset_id=result.dataset_id,
            triton_model=result.triton_model,
            triton_version=result.triton_version,
            precision=result.precision,
            quality=quality,
            passed_gate=result.passed_gate,
            uri=result.version_dir.resolve().as_uri(),
        )
    )
    enqueue(session, event)
    return event


def publish_engine(result: BuildResult) -> None:
    """What ``kefu build`` (without --offline) calls after a gated build."""
    settings = Settings()

    async def run() -> None:
        async with open_database(settings) as sessions:
            async with sessions() as session, session.begin():
                event = await record_engine(session, result)
            if event is None:
                print(f"engine {result.engine_id} was already recorded")
                return
            sent = await flush_outbox(settings, sessions, client="builder-cli")
            print(f"engine.built for {result.engine_id} {'published' if sent else 'queued in the outbox'}")

    asyncio.run(run())
