"""A service's real runtime with no broker or PostgreSQL behind it, for handler tests that take seconds.

``sqlite_runtime`` builds the runtime the service's ``app.py`` builds (``ServiceRuntime.build``: the broker from
``make_broker`` with its retry and dead-letter middleware, sessions, artifact store) on a SQLite file copied from
one migrated once per test session, so a test pays for the copy, not for Alembic. Tests register the service's own
handlers on ``rt.broker`` and drive them through FastStream's ``TestKafkaBroker``, which delivers in memory to the
subscribers with their middleware, so a poison message really goes through ``DeadLetterMiddleware`` to
``<topic>.dlq``. The integration tests under tests/integration do the same against Tansu and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from faststream.kafka import KafkaBroker
from sqlalchemy import func, select

from libs.common.broker import publish_event
from libs.common.db import upgrade_database
from libs.common.events import Event
from libs.common.runtime import ServiceRuntime
from libs.common.settings import KefuSettings
from libs.common.tables import ProcessedEvent

S = TypeVar("S", bound=KefuSettings)


@functools.cache
def _migrated_template() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="kefu-unit-db-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "kefu.db"
    upgrade_database(f"sqlite+aiosqlite:///{path}")  # Alembic's env runs its own event loop: called in a thread
    return path


def unit_settings(settings_cls: type[S], home: Path, **overrides: Any) -> S:
    """The service's settings on a fresh home (SQLite there); failures retried twice with no wait, so a transient
    failure reaches the dead-letter topic in milliseconds instead of the production backoff's seconds."""
    values: dict[str, Any] = {
        "home": home,
        "database_url": None,
        "migrate_on_start": False,
        "consumer_retry_attempts": 2,
        "consumer_retry_backoff_seconds": 0.0,
        **overrides,
    }
    return settings_cls(**values)


async def sqlite_runtime(name: str, settings: S) -> ServiceRuntime[S]:
    """The service's runtime on a copy of the migrated database; ``await rt.engine.dispose()`` when done."""
    settings.home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(await asyncio.to_thread(_migrated_template), settings.home / "kefu.db")
    return ServiceRuntime.build(name, settings)


def dead_letters(broker: KafkaBroker, topic: str) -> list[dict[str, Any]]:
    """Subscribe (before the test broker starts) to ``<topic>.dlq``; the returned list fills with the letters."""
    letters: list[dict[str, Any]] = []

    @broker.subscriber(f"{topic}.dlq", group_id="unit-dlq-reader")
    async def _read(letter: dict[str, Any]) -> None:
        letters.append(letter)

    return letters


async def deliver_twice(broker: KafkaBroker, event: Event) -> None:
    """The same event, as the wire has it, delivered twice: what a consumer sees after a rebalance or a crash
    between handling and the offset commit."""
    for _ in range(2):
        await publish_event(broker, event)


async def publish_raw(broker: KafkaBroker, topic: str, body: bytes | str) -> None:
    """Bytes as a foreign or broken producer might send them, with a JSON content type that lies."""
    await broker.publish(body, topic=topic, key=b"poison", headers={"content-type": "application/json"})


async def processed(rt: ServiceRuntime[Any], consumer: str) -> int:
    async with rt.sessions() as session:
        return int(await session.scalar(select(func.count()).where(ProcessedEvent.consumer == consumer)) or 0)


async def count(rt: ServiceRuntime[Any], table: Any, *where: Any) -> int:
    async with rt.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def invalid_payload(event: Event, **broken: Any) -> str:
    """The event's JSON with fields replaced (e.g. a required id emptied): parses, fails validation."""
    return json.dumps({**json.loads(event.model_dump_json()), **broken})
