"""Store a prepared dataset version and announce it: artifact store + ``datasets`` row + ``dataset.ready`` (outbox).

Storing is idempotent: the same content (same dataset id) is stored and announced once.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.artifacts import ArtifactStore
from libs.common.broker import make_broker
from libs.common.db import make_engine, make_sessionmaker, upgrade_database
from libs.common.events import DatasetReady
from libs.common.outbox import enqueue, publish_pending
from libs.common.tables import Dataset
from services.ingest.settings import Settings

log = logging.getLogger("kefu.ingest")


async def store_dataset(
    sessions: async_sessionmaker,
    artifacts: ArtifactStore,
    out_dir: Path,
    dataset_id: str,
    card: dict[str, Any],
    source: str,
    *,
    parent_dataset_id: str | None = None,
    flag_ids: list[str] | None = None,
) -> DatasetReady | None:
    """Copy ``out_dir`` into the store and stage ``dataset.ready``; None when this version was stored before."""
    artifacts.put_dir("datasets", out_dir, dataset_id)
    counts = {k: int(v) for k, v in card.get("counts", {}).items() if isinstance(v, int)}
    event = DatasetReady(
        dataset_id=dataset_id,
        uri=artifacts.uri("datasets", dataset_id),
        parent_dataset_id=parent_dataset_id,
        counts=counts,
        source=source,
        flag_ids=flag_ids or [],
    )
    async with sessions() as session, session.begin():
        if await session.get(Dataset, dataset_id) is not None:
            return None
        session.add(
            Dataset(
                dataset_id=dataset_id,
                uri=event.uri,
                source=source,
                parent_dataset_id=parent_dataset_id,
                counts=counts,
                card=card,
                flag_ids=flag_ids or [],
            )
        )
        enqueue(session, event)
    return event


def publish_dataset(out_dir: Path, dataset_id: str, card: dict[str, Any], source: str) -> None:
    """What ``kefu ingest`` (without --offline) calls: store, then try to relay the event right away.

    If the broker is unreachable the event stays in the outbox; any running kefu service's relay sends it later.
    """
    settings = Settings()
    url = settings.effective_database_url
    upgrade_database(url)

    async def run() -> None:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        try:
            event = await store_dataset(sessions, ArtifactStore(settings.home), out_dir, dataset_id, card, source)
            if event is None:
                print(f"dataset {dataset_id} was already stored and announced")
                return
            broker = make_broker(settings, service="ingest-cli")
            try:
                await asyncio.wait_for(broker.start(), timeout=10)
                sent = await publish_pending(broker, sessions)
                print(f"published dataset.ready for {dataset_id} ({sent} event(s) sent)")
            except (TimeoutError, OSError) as exc:
                print(
                    f"broker {settings.kafka_bootstrap} unreachable ({exc!r}); dataset.ready stays queued in the outbox"
                )
            finally:
                await broker.stop()
        finally:
            await engine.dispose()

    asyncio.run(run())
