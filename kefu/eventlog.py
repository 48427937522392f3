"""Every lifecycle event on the broker, as the demo watches the loop: wait for a stage, or for the first of several."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer

from libs.common.events import Topic

STAGE_TIMEOUT_S = 600


@dataclass
class EventLog:
    """Every lifecycle event seen on the broker, with the monotonic time it arrived."""

    seen: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    # Events before this (ms, the broker's record time) belong to an earlier run: `kefu up` keeps its broker's events.
    since_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    async def follow(self, bootstrap: str) -> None:
        consumer = AIOKafkaConsumer(
            *(t.value for t in Topic), bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            async for record in consumer:
                if record.timestamp < self.since_ms:
                    continue
                try:
                    payload = json.loads(record.value)
                except (TypeError, ValueError):
                    continue  # not an event (anyone may write to a topic): the consumers dead-letter it, we skip it
                async with self.changed:
                    self.seen.append((time.monotonic(), record.topic, payload if isinstance(payload, dict) else {}))
                    self.changed.notify_all()
        finally:
            await consumer.stop()

    async def wait_for(self, topics: set[str], match: dict[str, str], timeout: float = STAGE_TIMEOUT_S) -> tuple:
        def found() -> tuple | None:
            for at, topic, payload in self.seen:
                if topic in topics and all(payload.get(k) == v for k, v in match.items()):
                    return at, topic, payload
            return None

        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: found() is not None)
        return found()  # type: ignore[return-value]

    async def first_of(self, *alternatives: tuple[str, dict[str, Any]], timeout: float = STAGE_TIMEOUT_S) -> tuple:
        """The first event matching any (topic, fields) alternative, e.g. promoted or rolled back."""

        def found() -> tuple | None:
            for at, topic, payload in self.seen:
                if any(topic == t and all(payload.get(k) == v for k, v in m.items()) for t, m in alternatives):
                    return at, topic, payload
            return None

        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: found() is not None)
        return found()  # type: ignore[return-value]
