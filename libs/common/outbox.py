"""Transactional outbox and idempotent consumption.

A handler writes its state change, ``claim_event`` (so a redelivered event is skipped) and ``enqueue`` (the events
it announces) in ONE transaction. The relay publishes outbox rows afterwards; a crash between commit and publish
just means the relay publishes on its next pass (at-least-once), and consumers' ``claim_event`` makes it once in effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from faststream.kafka import KafkaBroker
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.common.broker import publish_json
from libs.common.events import Event
from libs.common.tables import EventLedger, OutboxMessage, ProcessedEvent, utcnow

log = logging.getLogger("kefu.outbox")


def _insert(session: AsyncSession):  # type: ignore[no-untyped-def]
    return pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert


async def claim_event(session: AsyncSession, consumer: str, event_id: str) -> bool:
    """Record that ``consumer`` handles ``event_id``; False if it already did (inside the caller's transaction)."""
    stmt = _insert(session)(ProcessedEvent).values(consumer=consumer, event_id=event_id, processed_at=utcnow())
    result = await session.execute(stmt.on_conflict_do_nothing())
    return result.rowcount == 1


def enqueue(session: AsyncSession, event: Event) -> None:
    """Stage ``event`` for publishing; it is sent only if the caller's transaction commits."""
    payload = event.model_dump_json()
    session.add(
        OutboxMessage(event_id=event.event_id, topic=event.topic.value, key=event.key, payload=payload, attempts=0)
    )
    session.add(
        EventLedger(
            event_id=event.event_id,
            topic=event.topic.value,
            key=event.key,
            payload=event.model_dump(mode="json"),
            occurred_at=event.occurred_at,
        )
    )


async def publish_pending(broker: KafkaBroker, sessions: async_sessionmaker, *, limit: int = 100) -> int:
    """Publish unpublished outbox rows in order; returns how many were sent.

    ``FOR UPDATE SKIP LOCKED`` lets several replicas of a service relay without sending a row twice (PostgreSQL;
    SQLite serialises writers anyway). A row is marked published only after the broker acknowledged it.
    """
    sent = 0
    async with sessions() as session, session.begin():
        rows = (
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.published_at.is_(None))
                .order_by(OutboxMessage.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in rows:
            try:
                await publish_json(broker, topic=row.topic, key=row.key, payload=row.payload, event_id=row.event_id)
            except Exception as exc:  # noqa: BLE001 - keep the row; retry on the next pass
                row.attempts += 1
                row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                log.warning("outbox publish of %s to %s failed: %s", row.event_id, row.topic, row.last_error)
                break  # keep per-key order: don't publish later rows past a failed one
            row.published_at = utcnow()
            row.attempts += 1
            sent += 1
    return sent


async def run_relay(
    broker: KafkaBroker, sessions: async_sessionmaker, *, poll_seconds: float, wake: asyncio.Event
) -> None:
    """Relay loop for a service's lifespan: publish, then sleep until ``poll_seconds`` pass or ``wake`` is set."""
    while True:
        try:
            while await publish_pending(broker, sessions):
                pass
        except Exception:
            log.exception("outbox relay pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=poll_seconds)
        wake.clear()
