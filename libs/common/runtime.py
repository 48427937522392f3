"""What a service process builds once in its lifespan: DB engine, sessions, broker, outbox relay, artifact store.

Each service's ``app.py`` is its composition root: it builds a ``ServiceRuntime``, registers its handlers on
``runtime.broker`` and calls ``start()``/``stop()`` from its lifespan. The runtime is generic over the service's
settings class: ``ServiceRuntime.build("ingest", Settings())`` is a ``ServiceRuntime[Settings]``, so handlers and
routes annotated with it read ``rt.settings.ingest_max_rows`` with no cast.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from libs.common.artifacts import ArtifactStore
from libs.common.broker import make_broker
from libs.common.db import make_engine, make_sessionmaker, upgrade_database
from libs.common.outbox import run_relay
from libs.common.settings import KefuSettings

log = logging.getLogger("kefu.runtime")
#: How long each step of a shutdown may take before it is abandoned with a warning.
STOP_GRACE_SECONDS = 15.0
S = TypeVar("S", bound=KefuSettings)


@dataclass
class Sidecar:
    """A process a service needs beside it (its ``sidecars.py`` returns them), started by ``kefu up`` before the
    services. Defined here, not in the supervisor, so services depend only on libs."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    endpoints: list[str] = field(default_factory=list)
    ready_port: int | None = None


@dataclass
class ServiceRuntime(Generic[S]):
    name: str
    settings: S
    engine: AsyncEngine
    sessions: async_sessionmaker
    broker: KafkaBroker
    artifacts: ArtifactStore
    outbox_wake: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    @classmethod
    def build(cls, name: str, settings: S) -> ServiceRuntime[S]:
        engine = make_engine(settings.effective_database_url)
        return cls(
            name=name,
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            broker=make_broker(settings, service=name),
            artifacts=ArtifactStore(settings.home),
        )

    async def start(self) -> None:
        """Migrate (if asked), connect the broker (starting registered subscribers) and start the outbox relay."""
        if self.settings.migrate_on_start:
            # Alembic's env runs its own event loop: give it a thread.
            await asyncio.to_thread(upgrade_database, self.settings.effective_database_url)
        await self.broker.start()
        self.spawn(
            run_relay(
                self.broker, self.sessions, poll_seconds=self.settings.outbox_poll_seconds, wake=self.outbox_wake
            ),
            name=f"{self.name}-outbox-relay",
        )
        log.info(
            "%s runtime started (db=%s, kafka=%s)", self.name, self.engine.url.drivername, self.settings.kafka_bootstrap
        )

    def spawn(self, coro, *, name: str) -> asyncio.Task:  # type: ignore[no-untyped-def]
        """A background task that lives as long as the service and is cancelled on stop."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    def kick_outbox(self) -> None:
        """Publish staged events now instead of at the next poll."""
        self.outbox_wake.set()

    async def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Cancel the background tasks, close the broker and the database pool; a step that does not finish
        within ``grace_seconds`` is logged and left behind, so a shutdown never hangs (a test teardown once
        waited 600 s here for something that never answered)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            done, stuck = await asyncio.wait(self._tasks, timeout=grace_seconds)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("%s: task %s had failed: %r", self.name, task.get_name(), task.exception())
            for task in stuck:
                log.warning("%s: task %s did not stop within %g s", self.name, task.get_name(), grace_seconds)
        self._tasks.clear()
        for step, close in (("broker", self.broker.stop), ("database pool", self.engine.dispose)):
            try:
                await asyncio.wait_for(close(), grace_seconds)
            except TimeoutError:
                log.warning("%s: closing the %s took over %g s; left behind", self.name, step, grace_seconds)
