"""Transactional outbox and idempotent consumption.

A handler writes its state change, ``claim_event`` (so a redelivered event is skipped) and ``enqueue`` (the events
it announces) in ONE transaction. The relay publishes outbox rows afterwards; a crash between commit and publish
just means the relay publishes on its next pass (at-least-once), and consumers' ``claim_event`` makes it once in effect.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from faststream.kafka import KafkaBroker
from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.common.broker import make_broker, publish_json
from libs.common.events import Event
from libs.common.settings import KefuSettings
from libs.common.tables import EventLedger, OutboxMessage, ProcessedEvent, utcnow
from libs.common.telemetry import resumed_trace, trace_headers
from libs.common.wake import woken

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
        OutboxMessage(
            event_id=event.event_id,
            topic=event.topic.value,
            key=event.key,
            payload=payload,
            attempts=0,
            headers=trace_headers(),
        )
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


async def publish_pending(
    broker: KafkaBroker, sessions: async_sessionmaker, *, limit: int = 100, lease_seconds: float = 30.0
) -> int:
    """Publish unpublished outbox rows in id order; returns how many were sent.

    Rows are leased first in one UPDATE (with ``SKIP LOCKED`` on PostgreSQL), so concurrent relays — every
    service runs one, and CLI commands flush too — never send a row twice. A row is marked published only after
    the broker acknowledged it; a failure releases the lease of the rows not sent, for the next pass.
    """
    now = utcnow()
    async with sessions() as session, session.begin():
        due = (
            select(OutboxMessage.id)
            .where(
                OutboxMessage.published_at.is_(None),
                or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until < now),
            )
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
        if session.bind.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        leased = (
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(due.scalar_subquery()))
                .values(lease_until=now + timedelta(seconds=lease_seconds), attempts=OutboxMessage.attempts + 1)
                .returning(
                    OutboxMessage.id,
                    OutboxMessage.topic,
                    OutboxMessage.key,
                    OutboxMessage.payload,
                    OutboxMessage.event_id,
                    OutboxMessage.headers,
                )
            )
        ).all()
    sent: list[int] = []
    failed: tuple[int, str] | None = None
    for row in sorted(leased, key=lambda r: r.id):
        try:
            with resumed_trace(row.headers):
                await publish_json(broker, topic=row.topic, key=row.key, payload=row.payload, event_id=row.event_id)
        except Exception as exc:  # noqa: BLE001 - keep the row; retry on the next pass
            failed = (row.id, f"{type(exc).__name__}: {exc}"[:2000])
            log.warning("outbox publish of %s to %s failed: %s", row.event_id, row.topic, failed[1])
            break  # keep per-key order: don't publish later rows past a failed one
        sent.append(row.id)
    async with sessions() as session, session.begin():
        if sent:
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.id.in_(sent)).values(published_at=utcnow(), lease_until=None)
            )
        unsent = [r.id for r in leased if r.id not in sent]
        if unsent:
            await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(unsent)).values(lease_until=None))
        if failed:
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.id == failed[0]).values(last_error=failed[1])
            )
    return len(sent)


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
        await woken(wake, poll_seconds)


async def flush_outbox(settings: KefuSettings, sessions: async_sessionmaker, *, client: str) -> int | None:
    """For short-lived commands: publish what is pending now. None if the broker is unreachable; the rows stay
    in the outbox and any running service's relay publishes them later."""
    broker = make_broker(settings, service=client)
    try:
        await asyncio.wait_for(broker.start(), timeout=10)
        return await publish_pending(broker, sessions)
    except (TimeoutError, OSError) as exc:
        log.warning("broker %s unreachable (%r): events stay queued in the outbox", settings.kafka_bootstrap, exc)
        return None
    finally:
        await broker.stop()
