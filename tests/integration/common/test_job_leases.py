"""Jobs owned by leases (libs/common/jobs.py) on real PostgreSQL: two runners never run one job twice, a dead
runner's job is taken over only after its lease expired, and a runner that lost its lease records nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.db import make_engine, make_sessionmaker
from libs.common.jobs import LeaseLost, add_job, claim_next, finish_job, recover_interrupted, run_worker
from libs.common.tables import Job

LEASE = 1.0  # seconds; the heartbeat renews every third of it


@pytest.fixture
async def two_pools(pg_url: str) -> AsyncIterator[tuple[async_sessionmaker, async_sessionmaker]]:
    """Two engines (connection pools), as two trainer processes would have."""
    engines = [make_engine(pg_url), make_engine(pg_url)]
    yield make_sessionmaker(engines[0]), make_sessionmaker(engines[1])
    for engine in engines:
        await engine.dispose()


async def _queue(sessions: async_sessionmaker, kind: str) -> str:
    key = uuid.uuid4().hex
    async with sessions() as session, session.begin():
        assert await add_job(session, kind, key, {"n": 1})
    return key


async def _row(sessions: async_sessionmaker, kind: str, key: str) -> Job:
    async with sessions() as session:
        row = await session.scalar(select(Job).where(Job.kind == kind, Job.key == key))
    assert row is not None
    return row


def _runner(sessions: async_sessionmaker, kind: str, name: str, runs: list[tuple[str, int]], seconds: float):
    """A real runner loop whose job function is a slow coroutine (several leases long) that records its outcome."""

    async def work(job: Job) -> None:
        runs.append((name, job.id))
        await asyncio.sleep(seconds)
        async with sessions() as session, session.begin():
            await finish_job(session, job.id, owner=job.owner, result={"by": name})

    return run_worker(
        sessions, kind, work, wake=asyncio.Event(), poll_seconds=0.1, owner=name, lease_seconds=LEASE, max_attempts=3
    )


async def test_two_runners_never_run_one_job_twice(two_pools) -> None:
    kind = f"test-{uuid.uuid4().hex[:8]}"
    a_sessions, b_sessions = two_pools
    key = await _queue(a_sessions, kind)
    runs: list[tuple[str, int]] = []
    runners = [
        asyncio.create_task(_runner(a_sessions, kind, "runner-a", runs, 4 * LEASE)),
        asyncio.create_task(_runner(b_sessions, kind, "runner-b", runs, 4 * LEASE)),
    ]
    try:
        for _ in range(100):
            if (await _row(a_sessions, kind, key)).status == "done":
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2 * LEASE)  # room for a wrong takeover to show
    finally:
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
    row = await _row(a_sessions, kind, key)
    assert len(runs) == 1, runs  # the heartbeat kept the lease alive for 4 lease lengths: nobody took it over
    assert row.status == "done" and row.attempts == 1 and row.result == {"by": runs[0][0]}
    assert row.owner == runs[0][0] and row.lease_until is None


async def test_dead_runners_job_is_taken_over_only_after_its_lease_expired(two_pools) -> None:
    kind = f"test-{uuid.uuid4().hex[:8]}"
    a_sessions, b_sessions = two_pools
    key = await _queue(a_sessions, kind)
    runs: list[tuple[str, int]] = []
    a = asyncio.create_task(_runner(a_sessions, kind, "runner-a", runs, 60))
    while not runs:
        await asyncio.sleep(0.05)
    # A replica starting now (rolling update) must leave a heartbeating job alone, at start and in its loop.
    assert await recover_interrupted(b_sessions, kind, max_attempts=3) == []
    assert await claim_next(b_sessions, kind, owner="runner-b", lease_seconds=LEASE) is None
    a.cancel()  # runner A dies mid-job: no heartbeat, no outcome; the row stays running under its lease
    await asyncio.gather(a, return_exceptions=True)
    died = asyncio.get_running_loop().time()
    assert (await _row(a_sessions, kind, key)).status == "running"
    b = asyncio.create_task(_runner(b_sessions, kind, "runner-b", runs, 0.1))
    try:
        for _ in range(100):
            if (await _row(b_sessions, kind, key)).status == "done":
                break
            await asyncio.sleep(0.05)
    finally:
        b.cancel()
        await asyncio.gather(b, return_exceptions=True)
    took = asyncio.get_running_loop().time() - died
    row = await _row(b_sessions, kind, key)
    assert [name for name, _ in runs] == ["runner-a", "runner-b"]
    assert row.status == "done" and row.attempts == 2 and row.result == {"by": "runner-b"}
    assert took >= LEASE * 0.5  # not before A's last renewal ran out


async def test_a_runner_that_lost_its_lease_records_nothing(two_pools) -> None:
    kind = f"test-{uuid.uuid4().hex[:8]}"
    a_sessions, b_sessions = two_pools
    key = await _queue(a_sessions, kind)
    stale = await claim_next(a_sessions, kind, owner="runner-a", lease_seconds=0.2)
    assert stale is not None
    await asyncio.sleep(0.4)  # A hung past its lease (no heartbeat): B takes the job over
    taken = await claim_next(b_sessions, kind, owner="runner-b", lease_seconds=LEASE, max_attempts=3)
    assert taken is not None and taken.id == stale.id and taken.attempts == 2
    with pytest.raises(LeaseLost):
        async with a_sessions() as session, session.begin():
            await finish_job(session, stale.id, owner="runner-a", result={"by": "runner-a"})
    async with b_sessions() as session, session.begin():
        await finish_job(session, taken.id, owner="runner-b", result={"by": "runner-b"})
    row = await _row(a_sessions, kind, key)
    assert row.status == "done" and row.result == {"by": "runner-b"}


async def test_expired_job_fails_after_max_attempts(two_pools) -> None:
    kind = f"test-{uuid.uuid4().hex[:8]}"
    sessions, _ = two_pools
    key = await _queue(sessions, kind)
    for attempt in (1, 2):
        job = await claim_next(sessions, kind, owner=f"dies-{attempt}", lease_seconds=0.1, max_attempts=2)
        assert job is not None and job.attempts == attempt
        await asyncio.sleep(0.2)
    assert await claim_next(sessions, kind, owner="third", lease_seconds=LEASE, max_attempts=2) is None
    row = await _row(sessions, kind, key)
    assert row.status == "failed" and "interrupted 2 times" in row.error
