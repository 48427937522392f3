"""Which versions stay in the Triton repository when a new one is loaded, so the live one is never unloaded.

Triton keeps the newest two version folders of the model loaded (``config.pbtxt``: ``latest { num_versions: 2 }``).
Loading a new version would therefore push the live one out whenever another version newer than live is still in
the repository — typically a canary that the new engine supersedes: the gateway rolls it back when the new
``engine.built`` arrives and the builder retires it then, but only after the new version was already loaded. So
before loading a new version the builder parks every version between the live one and the new one under
``REPO/.superseded/`` (Triton never looks at dot folders), and puts them back if the new version fails its smoke
test. Versions newer than the new one are left alone: they belong to builds in flight elsewhere.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.tables import Deployment
from services.builder import repository

log = logging.getLogger("kefu.builder.retention")
Parked = list[tuple[Path, Path]]  # (where the version was, where it is parked)


async def live_version(sessions: async_sessionmaker, triton_model: str) -> int | None:
    """The Triton version of the live deployment of ``triton_model`` (a read of the gateway's table, see
    libs/common/tables.py [i]); None when nothing is live."""
    async with sessions() as session:
        return await session.scalar(
            select(Deployment.triton_version)
            .where(Deployment.state == "live", Deployment.triton_model == triton_model)
            .order_by(Deployment.id.desc())
            .limit(1)
        )


def superseded(existing: list[int], live: int | None, new: int) -> list[int]:
    """The versions that would share Triton's two loaded slots with ``new`` ahead of the live one."""
    if live is None or live not in existing:
        return []  # nothing live in this repository: nothing to protect
    return [v for v in existing if live < v < new]


def park_superseded(repo_dir: Path, name: str, live: int | None, new: int) -> Parked:
    """Move the superseded versions out of Triton's sight; returns what moved, for ``restore``."""
    model_root = Path(repo_dir) / repository.check_model_name(name)
    parked: Parked = []
    for version in superseded(repository.versions(model_root), live, new):
        target = Path(repo_dir) / ".superseded" / f"{name}-{version}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        (model_root / str(version)).rename(target)
        parked.append((model_root / str(version), target))
        log.info("parked %s v%s (superseded by v%s; live v%s stays loaded)", name, version, new, live)
    return parked


def restore(parked: Parked, only: set[int] | None = None) -> Parked:
    """Put parked versions back (all, or those numbered in ``only``); returns what was restored."""
    restored: Parked = []
    for original, target in parked:
        if (only is None or int(original.name) in only) and target.is_dir() and not original.exists():
            target.rename(original)
            restored.append((original, target))
    return restored
