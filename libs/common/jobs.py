"""A durable queue of long tasks in the database (one training or build at a time per runner).

Consumers turn an event into a job inside the same transaction as ``claim_event``; a runner (``run_worker``) runs
jobs one by one. A running job is *owned*: the runner that claimed it writes its name in ``owner`` and keeps
``lease_until`` in the future with a heartbeat while the work runs. Another runner takes a running job over only
once its lease has expired (its owner died or hung), so replicas — e.g. old and new pods during a rolling update —
never run one job twice, and a job a crash interrupted is retried (up to ``max_attempts``), then marked failed:
never silently lost. The outcome is written only while the lease is still ours (``finish_job(owner=…)``), so a
runner that lost its lease cannot overwrite the result of the runner that took over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.common.tables import Job, utcnow
from libs.common.wake import woken

log = logging.getLogger("kefu.jobs")

DEFAULT_LEASE_SECONDS = 30.0


class LeaseLost(RuntimeError):
    """The job's lease expired and another runner may own it now: this runner's outcome must not be recorded."""


def runner_name(service: str = "kefu") -> str:
    """A name unique to one runner: host and pid for people reading the row, a random suffix so that a restarted
    process with a reused pid is still someone else (it must wait for the dead one's lease)."""
    return f"{service}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def add_job(session: AsyncSession, kind: str, key: str, payload: dict[str, Any]) -> bool:
    """Queue work unless a job of this kind and key exists already (any status); True if queued now."""
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(Job).values(
        kind=kind, key=key, status="queued", attempts=0, payload=payload, created_at=utcnow(), updated_at=utcnow()
    )
    result = await session.execute(stmt.on_conflict_do_nothing())
    return result.rowcount == 1


def _lease_expired():  # type: ignore[no-untyped-def]
    # A NULL lease is a row left running by a version without leases: nobody can be heartbeating it.
    return or_(Job.lease_until.is_(None), Job.lease_until < utcnow())


async def recover_interrupted(sessions: async_sessionmaker, kind: str, *, max_attempts: int) -> list[Job]:
    """At start: running jobs whose lease expired (their runner died) go back to the queue, or fail after
    ``max_attempts``. A job another replica still heartbeats is left alone."""
    async with sessions() as session, session.begin():
        stuck = (
            await session.scalars(
                select(Job)
                .where(Job.kind == kind, Job.status == "running", _lease_expired())
                .with_for_update(skip_locked=True)
            )
        ).all()
        for job in stuck:
            _give_up_or_requeue(job, max_attempts)
        return list(stuck)


def _give_up_or_requeue(job: Job, max_attempts: int) -> None:
    log.warning("%s job %s (%s) lost its runner %s (attempt %s)", job.kind, job.id, job.key, job.owner, job.attempts)
    if job.attempts >= max_attempts:
        job.status, job.error = "failed", f"interrupted {job.attempts} times (runner died mid-run)"
    else:
        job.status = "queued"
    job.owner, job.lease_until, job.updated_at = None, None, utcnow()


async def claim_next(
    sessions: async_sessionmaker,
    kind: str,
    *,
    owner: str | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    max_attempts: int | None = None,
) -> Job | None:
    """Oldest claimable job of ``kind``, marked running and leased to ``owner``; None when there is none.

    Claimable: queued, or running with an expired lease (taken over, counting one more attempt; after
    ``max_attempts`` it is marked failed instead). Row lock + skip locked: two runners never claim one row.
    """
    owner = owner or runner_name()
    while True:
        async with sessions() as session, session.begin():
            claimable = or_(Job.status == "queued", (Job.status == "running") & _lease_expired())
            job = await session.scalar(
                select(Job)
                .where(Job.kind == kind, claimable)
                .order_by(Job.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if job is None:
                return None
            if job.status == "running":
                _give_up_or_requeue(job, max_attempts if max_attempts is not None else job.attempts + 1)
                if job.status == "failed":
                    continue  # committed on leaving the block; look for the next one
            now = utcnow()
            job.status, job.attempts, job.updated_at = "running", job.attempts + 1, now
            job.owner, job.lease_until = owner, now + timedelta(seconds=lease_seconds)
            return job


async def renew_lease(sessions: async_sessionmaker, job_id: int, owner: str, lease_seconds: float) -> bool:
    """Extend ``owner``'s lease on a running job; False if the job is no longer ours (taken over or finished)."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(Job)
            .where(Job.id == job_id, Job.owner == owner, Job.status == "running")
            .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
        )
        return result.rowcount == 1


async def finish_job(
    session: AsyncSession,
    job_id: int,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    owner: str | None = None,
) -> None:
    """Mark a job done (``result``) or failed (``error``) in the caller's transaction.

    With ``owner``, only while that runner still holds the job: otherwise ``LeaseLost`` is raised, which rolls back
    the caller's transaction (the model/engine rows and events it staged with the outcome) as well.
    """
    stmt = update(Job).where(Job.id == job_id)
    if owner is not None:
        stmt = stmt.where(Job.owner == owner, Job.status == "running")
    done = await session.execute(
        stmt.values(
            status="failed" if error else "done", result=result, error=error, lease_until=None, updated_at=utcnow()
        )
    )
    if owner is not None and done.rowcount != 1:
        raise LeaseLost(f"job {job_id} is no longer owned by {owner}: its outcome is not recorded")


async def _heartbeat(sessions: async_sessionmaker, job: Job, owner: str, lease_seconds: float) -> None:
    """Renew the lease every third of its length while the job runs; a failed renewal (DB blip) is retried at
    the next beat, with two more chances before the lease runs out."""
    while True:
        await asyncio.sleep(lease_seconds / 3)
        try:
            if not await renew_lease(sessions, job.id, owner, lease_seconds):
                log.error("%s job %s (%s): lease lost; its outcome will not be recorded", job.kind, job.id, job.key)
                return
        except Exception:
            log.warning("%s job %s: lease renewal failed, retrying", job.kind, job.id, exc_info=True)


async def run_worker(
    sessions: async_sessionmaker,
    kind: str,
    handle: Callable[[Job], Awaitable[None]],
    *,
    wake: asyncio.Event,
    poll_seconds: float = 2.0,
    warm_up: Callable[[], object] | None = None,
    owner: str | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    max_attempts: int | None = None,
) -> None:
    """Run claimable jobs of ``kind`` one at a time, forever; ``handle`` must record the outcome
    (``finish_job(..., owner=job.owner)``), while a heartbeat task keeps the job's lease alive.

    ``warm_up`` runs once, in a thread, before the first job: e.g. importing torch and transformers, which takes
    seconds that a job should not wait for and that must not block the event loop. Jobs wait for it, since two
    threads importing transformers at once can each see it half-initialised.

    An exception escaping ``handle`` is a bug, not a job failure: it is logged and the job marked failed so the
    queue moves on. ``LeaseLost`` means another runner took the job over: nothing is recorded by this one.
    """
    owner = owner or runner_name(kind)
    if warm_up is not None:
        await asyncio.to_thread(warm_up)
    while True:
        job = await claim_next(sessions, kind, owner=owner, lease_seconds=lease_seconds, max_attempts=max_attempts)
        if job is None:
            await woken(wake, poll_seconds)
            continue
        beat = asyncio.create_task(_heartbeat(sessions, job, owner, lease_seconds), name=f"{kind}-job-{job.id}-lease")
        try:
            await handle(job)
        except LeaseLost:
            log.error("%s job %s (%s) was taken over by another runner; outcome dropped", kind, job.id, job.key)
        except Exception as exc:
            log.exception("%s job %s (%s) crashed", kind, job.id, job.key)
            with contextlib.suppress(LeaseLost):
                async with sessions() as session, session.begin():
                    await finish_job(session, job.id, error=f"{type(exc).__name__}: {exc}", owner=owner)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
