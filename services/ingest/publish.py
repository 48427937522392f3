"""``kefu ingest`` without --offline: store the dataset version (``libs.datasets.store``), then relay its event."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from libs.common.artifacts import ArtifactStore
from libs.common.db import open_database
from libs.common.outbox import flush_outbox
from libs.datasets.store import store_dataset
from services.ingest.settings import Settings


def publish_dataset(out_dir: Path, dataset_id: str, card: dict[str, Any], source: str) -> None:
    """What ``kefu ingest`` (without --offline) calls: store, then try to relay the event right away."""
    settings = Settings()

    async def run() -> None:
        async with open_database(settings) as sessions:
            async with sessions() as session, session.begin():
                event = await store_dataset(session, ArtifactStore(settings.home), out_dir, dataset_id, card, source)
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
