"""Store a prepared dataset version and announce it: artifact store + ``datasets`` row + ``dataset.ready`` (outbox).

Storing is idempotent: the same content (same dataset id) is stored and announced once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.artifacts import ArtifactStore
from libs.common.db import open_database
from libs.common.events import DatasetReady
from libs.common.outbox import enqueue, flush_outbox
from libs.common.tables import Dataset
from services.ingest.settings import Settings


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
    """What ``kefu ingest`` (without --offline) calls: store, then try to relay the event right away."""
    settings = Settings()

    async def run() -> None:
        async with open_database(settings) as sessions:
            event = await store_dataset(sessions, ArtifactStore(settings.home), out_dir, dataset_id, card, source)
            if event is None:
                print(f"dataset {dataset_id} was already stored and announced")
                return
            sent = await flush_outbox(settings, sessions, client="ingest-cli")
            print(
                f"published dataset.ready for {dataset_id}"
                if sent
                else f"dataset.ready for {dataset_id} queued in the outbox (broker unreachable)"
            )

    asyncio.run(run())
