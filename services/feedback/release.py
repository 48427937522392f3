"""Release: approved corrections → a new dataset version (parent + corrections) announced as ``dataset.ready``.
Approved similar questions (flags that name an entry) join their entries' rows the same way.

The parent is the dataset of the newest live deployment unless one is given. Every correction released so far is
applied again together with the newly approved ones, so a version built on a parent that predates an earlier
release (still training, say) loses none of them. The dataset row, its ``dataset.ready`` outbox row and the flags'
``released`` status commit in ONE transaction: a crash leaves either all of it or none. The new version carries
the serving profile of the last month's traffic (``serving_profile``), which the trainer tunes the next model to.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.artifacts import ArtifactStore
from libs.common.tables import Answer, Deployment, Flag
from libs.datasets.cleaning import redact_customer_text
from libs.datasets.store import store_dataset
from services.feedback import serving_profile
from services.feedback.corrections import Correction, Wording, build_release
from services.feedback.errors import Conflict, NotFound

log = logging.getLogger("kefu.feedback.release")


@dataclass(frozen=True)
class ReleaseResult:
    dataset_id: str
    parent_dataset_id: str
    flag_ids: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    published: bool = True  # False: identical content was stored before, so no new dataset.ready

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def live_dataset_id(sessions: async_sessionmaker) -> str | None:
    """The dataset of the newest live deployment (what the model users talk to was trained on)."""
    async with sessions() as session:
        return await session.scalar(
            select(Deployment.dataset_id)
            .where(Deployment.state == "live")
            .order_by(Deployment.started_at.desc(), Deployment.id.desc())
            .limit(1)
        )


async def _reviewed(sessions: async_sessionmaker, status: str) -> list[tuple[str, str, str]]:
    """(flag_id, question, final correction) of the flags in ``status``, in review order."""
    async with sessions() as session:
        rows = (
            await session.execute(
                # The entry's question when the correction replaced an entry (so the release fixes that row), the
                # customer's own words when it added one.
                select(Flag.flag_id, func.coalesce(Flag.entry_question, Answer.question), Flag.final_correction)
                .join(Answer, Answer.answer_id == Flag.answer_id)
                .where(Flag.status == status, Flag.final_correction.is_not(None))
                .order_by(Flag.reviewed_at, Flag.created_at, Flag.flag_id)
            )
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


async def _wordings(sessions: async_sessionmaker, status: str) -> list[Wording]:
    """The similar questions of the flags in ``status`` that name an entry instead of correcting, in review order."""
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Flag.flag_id, Flag.similar_to, Answer.question)
                .join(Answer, Answer.answer_id == Flag.answer_id)
                .where(Flag.status == status, Flag.final_correction.is_(None), Flag.similar_to.is_not(None))
                .order_by(Flag.reviewed_at, Flag.created_at, Flag.flag_id)
            )
        ).all()
    # The wording that went live (redacted by default rules): the release's own cleaning only ever masks more.
    return [Wording(r[0], r[1], redact_customer_text(r[2])) for r in rows]


async def release_corrections(
    sessions: async_sessionmaker,
    artifacts: ArtifactStore,
    *,
    dataset_id: str | None = None,
    min_approved: int = 1,
) -> ReleaseResult | None:
    """Build, store and announce a new dataset version from the approved flags.

    None when fewer than ``min_approved`` flags are approved, or when a concurrent review or release changed them
    meanwhile (the next trigger tries again). ``FeedbackError`` when there is no parent dataset to build on.
    """
    approved, approved_wordings = await _reviewed(sessions, "approved"), await _wordings(sessions, "approved")
    if not (approved or approved_wordings) or len(approved) + len(approved_wordings) < min_approved:
        return None
    parent = dataset_id or await live_dataset_id(sessions)
    if parent is None:
        raise Conflict("no_live_deployment", "no live deployment to take the dataset from; name a dataset")
    parent_dir = artifacts.path("datasets", parent)
    if not (parent_dir / "train.jsonl").is_file():
        raise NotFound("dataset_not_found", f"dataset {parent} is not in the artifact store ({parent_dir})")
    released = await _reviewed(sessions, "released")
    corrections = [Correction(f, q, a) for f, q, a in [*released, *approved]]
    wordings = [*await _wordings(sessions, "released"), *approved_wordings]
    flag_ids = [f for f, _, _ in approved] + [w.flag_id for w in approved_wordings]
    profile = await serving_profile.collect(sessions)

    with tempfile.TemporaryDirectory(prefix="kefu-release-") as tmp:
        out = Path(tmp) / "dataset"
        new_id, card = await asyncio.to_thread(build_release, parent_dir, parent, corrections, flag_ids, out, wordings)
        # Not part of the content id: the same rows are the same version, whatever the traffic was (the first
        # release of those rows keeps its profile).
        serving_profile.write(out, profile)
        async with sessions() as session, session.begin():
            locked = (
                (await session.execute(select(Flag).where(Flag.flag_id.in_(flag_ids)).with_for_update()))
                .scalars()
                .all()
            )
            expected = {f: a for f, _, a in approved} | {w.flag_id: None for w in approved_wordings}
            if len(locked) != len(flag_ids) or any(
                f.status != "approved" or f.final_correction != expected[f.flag_id] for f in locked
            ):
                log.info("approved flags changed while release %s was built; not releasing it", new_id)
                return None
            for flag in locked:
                flag.status, flag.released_dataset_id = "released", new_id
            # store_dataset only stages in this session, so the dataset row, its outbox event and the flags above
            # commit (or roll back) together when this block ends.
            event = await store_dataset(
                session, artifacts, out, new_id, card, f"feedback:{parent}", parent_dataset_id=parent, flag_ids=flag_ids
            )
    counts = {k: v for k, v in card["counts"].items() if isinstance(v, int)}
    log.info("released %d flag(s) into dataset %s (parent %s)", len(flag_ids), new_id, parent)
    return ReleaseResult(new_id, parent, flag_ids, counts, published=event is not None)
