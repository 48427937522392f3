"""A durable queue of long tasks in the database (one training or build at a time per service).

Consumers turn an event into a job inside the same transaction as ``claim_event``; a worker loop runs jobs one
by one. A job left ``running`` by a crash is re-queued at start (up to ``max_attempts``), then marked failed:
never silently lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.common.tables import Job, utcnow

log = logging.getLogger("kefu.jobs")


async def add_job(session: AsyncSession, kind: str, key: str, payload: dict[str, Any]) -> bool:
    """Queue work unless a job of this kind and key exists already (any status); True if queued now."""
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(Job).values(
        kind=kind, key=key, status="queued", attempts=0, payload=payload, created_at=utcnow(), updated_at=utcnow()
    )
    result = await session.execute(stmt.on_conflict_do_nothing())
    return result.rowcount == 1


async def recover_interrupted(sessions: async_sessionmaker, kind: str, *, max_attempts: int) -> list[Job]:
    """At start: jobs a crash left ``running`` go back to the queue, or fail after ``max_attempts``."""
    async with sessions() as session, session.begin():
        stuck = (await session.scalars(select(Job).where(Job.kind == kind, Job.status == "running"))).all()
        for job in stuck:
            if job.attempts >= max_attempts:
                job.status, job.error = "failed", f"interrupted {job.attempts} times (process died mid-run)"
            else:
                job.status = "queued"
        return list(stuck)


async def claim_next(sessions: async_sessionmaker, kind: str) -> Job | None:
    """Oldest queued job of ``kind``, marked running (row lock + skip locked: replicas never share a job)."""
    async with sessions() as session, session.begin():
        job = await session.scalar(
            select(Job)
            .where(Job.kind == kind, Job.status == "queued")
            .order_by(Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if job is None:
            return None
        job.status, job.attempts, job.updated_at = "running", job.attempts + 1, utcnow()
        return job


async def finish_job(
    session: AsyncSession, job_id: int, *, result: dict[str, Any] | None = None, error: str | None = None
) -> None:
    """Mark a job done (``result``) or failed (``error``) in the caller's transaction."""
    await session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(status="failed" if error else "done", result=result, error=error, updated_at=utcnow())
    )


async def run_worker(
    sessions: async_sessionmaker,
    kind: str,
    handle: Callable[[Job], Awaitable[None]],
    *,
    wake: asyncio.Event,
    poll_seconds: float = 2.0,
    warm_up: Callable[[], object] | None = None,
) -> None:
    """Run queued jobs of ``kind`` one at a time, forever; ``handle`` must record the outcome (``finish_job``).

    ``warm_up`` runs once, in a thread, before the first job: e.g. importing torch and transformers, which takes
    seconds that a job should not wait for and that must not block the event loop. Jobs wait for it, since two
    threads importing transformers at once can each see it half-initialised.

    An exception escaping ``handle`` is a bug, not a job failure: it is logged and the job marked failed so the
    queue moves on.
    """
    if warm_up is not None:
        await asyncio.to_thread(warm_up)
    while True:
        job = await claim_next(sessions, kind)
        if job is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=poll_seconds)
            wake.clear()
            continue
        try:
            await handle(job)
        except Exception as exc:
            log.exception("%s job %s (%s) crashed", kind, job.id, job.key)
            async with sessions() as session, session.begin():
                await finish_job(session, job.id, error=f"{type(exc).__name__}: {exc}")
