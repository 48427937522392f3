"""Store a prepared dataset version and announce it: artifact store + ``datasets`` row + ``dataset.ready`` (outbox).

Storing is idempotent: the same content (same dataset id) is stored and announced once. The caller owns the
transaction (a unit of work): ``store_dataset`` only adds to the session it is given, so ingest commits the
dataset alone while feedback commits it together with the flags it releases, without nesting transactions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.artifacts import ArtifactStore
from libs.common.events import DatasetReady
from libs.common.outbox import enqueue
from libs.common.tables import Dataset


async def store_dataset(
    session: AsyncSession,
    artifacts: ArtifactStore,
    out_dir: Path,
    dataset_id: str,
    card: dict[str, Any],
    source: str,
    *,
    parent_dataset_id: str | None = None,
    flag_ids: list[str] | None = None,
) -> DatasetReady | None:
    """Copy ``out_dir`` into the store and stage the ``datasets`` row and ``dataset.ready`` in ``session``.

    Returns the staged event, or None when this version was stored before. Nothing is committed here: the row and
    its outbox event become visible when the caller's transaction commits, and vanish if it rolls back (the copied
    folder then stays unreferenced; its id is its content's, so a later store of that id reuses it as is).
    """
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
