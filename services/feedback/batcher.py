"""When to release: once enough flags are approved (threshold), every N seconds (schedule), or on demand.

One batcher per service process; a lock keeps one release at a time in the process, and the release itself
re-checks the flags under a row lock, so replicas racing each other release every flag once.
"""

from __future__ import annotations

import asyncio
import logging

from libs.common.broker import consumer_options
from libs.common.events import FeedbackFlagged, Topic
from libs.common.runtime import ServiceRuntime
from libs.common.wake import woken
from services.feedback.errors import FeedbackError
from services.feedback.flags import count_approved
from services.feedback.release import ReleaseResult, release_corrections
from services.feedback.settings import Settings

log = logging.getLogger("kefu.feedback.batcher")


class ReleaseBatcher:
    def __init__(self, rt: ServiceRuntime[Settings], settings: Settings) -> None:
        self.rt = rt
        self.settings = settings
        self.wake = asyncio.Event()
        self.lock = asyncio.Lock()

    def poke(self) -> None:
        """A flag was approved somewhere: check the threshold soon."""
        self.wake.set()

    async def release(self, *, dataset_id: str | None = None, min_approved: int = 1) -> ReleaseResult | None:
        async with self.lock:
            result = await release_corrections(
                self.rt.sessions, self.rt.artifacts, dataset_id=dataset_id, min_approved=min_approved
            )
        if result is not None:
            self.rt.kick_outbox()
        return result

    async def _attempt(self, *, min_approved: int) -> None:
        try:
            await self.release(min_approved=min_approved)
        except FeedbackError as exc:  # e.g. nothing is live yet: the approved flags wait for the next trigger
            log.warning("release postponed: %s", exc.message)
        except Exception:
            log.exception("release failed; the approved flags stay approved for the next trigger")

    async def run(self) -> None:
        """Until cancelled: on each poke check the threshold; on each interval release whatever is approved."""
        threshold = self.settings.feedback_release_threshold
        interval = self.settings.feedback_release_interval_seconds or None
        self.wake.set()  # flags approved while no feedback service ran count too
        while True:
            if not await woken(self.wake, interval):
                await self._attempt(min_approved=1)
            elif threshold > 0:
                async with self.rt.sessions() as session:
                    approved = await count_approved(session)
                if approved >= threshold:
                    await self._attempt(min_approved=threshold)


def register(rt: ServiceRuntime[Settings], batcher: ReleaseBatcher) -> None:
    """Flags accepted by ANY replica reach the threshold check (the design's 'feedback's own batcher')."""

    @rt.broker.subscriber(Topic.FEEDBACK_FLAGGED.value, **consumer_options(rt.settings, group="feedback-batcher"))
    async def on_flagged(event: FeedbackFlagged) -> None:
        # Only a nudge: the threshold is counted in the database, so a redelivered event changes nothing.
        batcher.poke()
