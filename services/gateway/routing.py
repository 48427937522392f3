"""The routing table each gateway process keeps in memory: the live engine and the canary with its share.

It is re-read from ``deployments`` every ``rollout_poll_seconds`` (and at once after a local decision), so a
rollout decided by another replica or by ``kefu rollback`` reaches every replica within that time without a
database round trip per request.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.tables import Deployment
from services.gateway.errors import unavailable
from services.gateway.rollout import evaluate_canary
from services.gateway.settings import Settings

log = logging.getLogger("kefu.gateway.routing")


@dataclass(frozen=True)
class Target:
    engine_id: str
    model_id: str
    dataset_id: str
    triton_model: str
    triton_version: int
    state: str  # live | canary

    @classmethod
    def of(cls, dep: Deployment) -> Target:
        return cls(dep.engine_id, dep.model_id, dep.dataset_id, dep.triton_model, dep.triton_version, dep.state)


class Router:
    def __init__(self, sessions: async_sessionmaker, settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        self.live: Target | None = None
        self.canary: Target | None = None
        self.canary_percent = 0.0

    def pick(self) -> Target:
        """The engine for one request: the canary for its share of traffic, else the live one (503 if none)."""
        if self.canary is not None and random.random() * 100 < self.canary_percent:
            return self.canary
        if self.live is None:
            if self.canary is not None:
                return self.canary
            raise unavailable("no live engine: nothing has been built and deployed yet")
        return self.live

    def models(self) -> list[str]:
        return sorted({t.triton_model for t in (self.live, self.canary) if t is not None})

    async def refresh(self) -> None:
        async with self.sessions() as session:
            rows = (
                await session.scalars(
                    select(Deployment).where(Deployment.state.in_(("live", "canary"))).order_by(Deployment.id)
                )
            ).all()
        live = [r for r in rows if r.state == "live"]
        canary = [r for r in rows if r.state == "canary"]
        self.live = Target.of(live[-1]) if live else None
        self.canary = Target.of(canary[-1]) if canary else None
        self.canary_percent = canary[-1].traffic_percent if canary else 0.0

    async def run(self, on_decision: Callable[[], None]) -> None:
        """Forever: judge the canary (any replica may; the row lock makes one decide), then refresh the table."""
        while True:
            try:
                async with self.sessions() as session, session.begin():
                    decided = await evaluate_canary(session, self.settings)
                if decided:
                    on_decision()
                await self.refresh()
            except Exception:
                log.exception("routing refresh failed; keeping the last table")
            await asyncio.sleep(self.settings.rollout_poll_seconds)
