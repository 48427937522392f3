"""Which engine serves: the first engine goes live at once, later ones as a canary that is promoted or rolled back
on evidence (``canary``), or held, promoted and rolled back by an operator.

All decisions are rows in ``deployments`` plus the event announcing them, staged in the same transaction
(outbox). The canary verdict reads the answer log, so every gateway replica sees the same numbers; the row lock
on the canary makes one replica decide. Only answers that finished (ok or error) count, not cancelled ones.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.broker import PoisonMessage
from libs.common.events import DeploymentLive, DeploymentRolledBack, EngineBuilt
from libs.common.outbox import enqueue
from libs.common.tables import Deployment, Engine, utcnow
from services.gateway.canary import Health, health_since, verdict
from services.gateway.metrics import ROLLOUTS
from services.gateway.settings import Settings

log = logging.getLogger("kefu.gateway.rollout")
ReadyCheck = Callable[[str, int], Awaitable[bool]]


class RolloutError(Exception):
    """A rollout request that cannot be carried out (nothing to roll back, engine no longer loaded)."""


async def _current(session: AsyncSession, state: str, *, lock: bool = False) -> Deployment | None:
    stmt = select(Deployment).where(Deployment.state == state).order_by(Deployment.id.desc()).limit(1)
    if lock and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=state == "canary")
    return await session.scalar(stmt)


def _live_event(dep: Deployment, previous: str | None) -> DeploymentLive:
    return DeploymentLive(
        engine_id=dep.engine_id,
        model_id=dep.model_id,
        dataset_id=dep.dataset_id,
        triton_model=dep.triton_model,
        triton_version=dep.triton_version,
        traffic_percent=dep.traffic_percent,
        previous_engine_id=previous,
    )


def _end(dep: Deployment, state: str, reason: str | None = None) -> None:
    dep.state, dep.traffic_percent, dep.ended_at = state, 0.0, utcnow()
    if reason:
        dep.reason = reason


def _roll_back_canary(
    session: AsyncSession, canary: Deployment, live: Deployment | None, reason: str
) -> DeploymentRolledBack:
    _end(canary, "rolled_back", reason)
    event = DeploymentRolledBack(
        engine_id=canary.engine_id, restored_engine_id=live.engine_id if live else None, reason=reason
    )
    enqueue(session, event)
    ROLLOUTS.labels("rolled_back").inc()
    log.warning("canary %s rolled back: %s", canary.engine_id, reason)
    return event


class UntrustedEngine(PoisonMessage):
    """An ``engine.built`` that the engine record does not vouch for: never deployed, dead-lettered with the reason
    (``kefu dlq list engine.built``)."""


async def check_engine_record(session: AsyncSession, event: EngineBuilt) -> str | None:
    """Why the event must not be deployed, or None when the builder's record of the engine agrees with it.

    The event alone is not trusted: anyone who can write to the topic could announce any Triton version with
    ``passed_gate: true``. The builder writes the ``engines`` row in the same transaction that stages the event
    (outbox), so a genuine event always finds its row, and the row's gate verdict is the one that counts.
    """
    engine = await session.get(Engine, event.engine_id)
    if engine is None:
        return f"engine {event.engine_id} has no engine record (not built by the builder)"
    mismatched = [
        f"{field} {getattr(event, field)!r} (record: {getattr(engine, field)!r})"
        for field in ("model_id", "triton_model", "triton_version")
        if getattr(event, field) != getattr(engine, field)
    ]
    if mismatched:
        return f"engine {event.engine_id} does not match its record: {', '.join(mismatched)}"
    if not engine.passed_gate:
        return f"engine {event.engine_id} did not pass its quality gate according to its record"
    return None


async def deploy_engine(session: AsyncSession, event: EngineBuilt, settings: Settings) -> str | None:
    """``engine.built`` → live (no live engine yet) or canary; returns the state given, None if ignored.

    Raises ``UntrustedEngine`` (dead-lettered by the consumer) when the engine record does not back the event."""
    if not event.passed_gate:
        log.info("engine %s did not pass its gate: not deployed", event.engine_id)
        return None
    if (reason := await check_engine_record(session, event)) is not None:
        ROLLOUTS.labels("refused").inc()
        log.error("not deploying: %s", reason)
        raise UntrustedEngine(reason)
    if await session.scalar(select(Deployment.id).where(Deployment.engine_id == event.engine_id).limit(1)):
        return None  # announced again (rebuild of the same engine): it already had its rollout
    live = await _current(session, "live", lock=True)
    dep = Deployment(
        engine_id=event.engine_id,
        model_id=event.model_id,
        dataset_id=event.dataset_id,
        triton_model=event.triton_model,
        triton_version=event.triton_version,
        state="live" if live is None else "canary",
        traffic_percent=100.0 if live is None else settings.canary_percent,
        previous_engine_id=live.engine_id if live else None,
        requests=0,
        errors=0,
    )
    if live is not None:
        canary = await _current(session, "canary", lock=True)
        if canary is not None:
            _roll_back_canary(session, canary, live, f"superseded by engine {event.engine_id}")
    session.add(dep)
    enqueue(session, _live_event(dep, dep.previous_engine_id))
    ROLLOUTS.labels(dep.state).inc()
    log.info(
        "engine %s (%s v%s) is %s at %.0f%%",
        dep.engine_id,
        dep.triton_model,
        dep.triton_version,
        dep.state,
        dep.traffic_percent,
    )
    return dep.state


async def evaluate_canary(session: AsyncSession, settings: Settings) -> str | None:
    """Check the canary once (caller's transaction); returns 'promoted' / 'rolled_back' when it decided."""
    canary = await _current(session, "canary", lock=True)
    if canary is None:
        return None
    live = await _current(session, "live", lock=True)
    c_health = await health_since(session, canary.engine_id, canary.started_at)
    l_health = await health_since(session, live.engine_id, canary.started_at) if live else Health(0, 0, None)
    canary.requests, canary.errors = c_health.requests, c_health.errors
    if canary.held:  # an operator decides this one
        return None
    elapsed = (utcnow() - canary.started_at).total_seconds()
    decision = verdict(c_health, l_health, canary.evidence, elapsed, settings)
    if decision is None:
        return None
    promote, reason = decision
    if not promote:
        _roll_back_canary(session, canary, live, reason)
        return "rolled_back"
    _promote(session, canary, live, f"promoted: {reason}")
    return "promoted"


def _promote(session: AsyncSession, canary: Deployment, live: Deployment | None, reason: str) -> None:
    if live is not None:
        _end(live, "retired", f"replaced by engine {canary.engine_id}")
    canary.state, canary.traffic_percent, canary.reason, canary.held = "live", 100.0, reason, False
    enqueue(session, _live_event(canary, live.engine_id if live else None))
    ROLLOUTS.labels("promoted").inc()
    log.info("canary %s %s", canary.engine_id, reason)


async def promote(session: AsyncSession, reason: str) -> DeploymentLive:
    """Operator promotion of the canary, whatever its evidence says (the reason is kept with it)."""
    canary = await _current(session, "canary", lock=True)
    if canary is None:
        raise RolloutError("nothing to promote: there is no canary")
    live = await _current(session, "live", lock=True)
    _promote(session, canary, live, f"promoted by operator: {reason}")
    return _live_event(canary, live.engine_id if live else None)


async def hold(session: AsyncSession, held: bool, reason: str) -> Deployment:
    """Hold the canary (no automatic verdict until released, promoted or rolled back) or release the hold."""
    canary = await _current(session, "canary", lock=True)
    if canary is None:
        raise RolloutError("nothing to hold: there is no canary")
    canary.held = held
    canary.reason = f"{'held' if held else 'released'} by operator: {reason}"
    log.info("canary %s %s", canary.engine_id, canary.reason)
    return canary


async def rollback(session: AsyncSession, reason: str, is_ready: ReadyCheck | None = None) -> DeploymentRolledBack:
    """Operator rollback: drop the canary if there is one, else put the previous live engine back."""
    live = await _current(session, "live", lock=True)
    canary = await _current(session, "canary", lock=True)
    if canary is not None:
        return _roll_back_canary(session, canary, live, f"manual: {reason}")
    if live is None or live.previous_engine_id is None:
        raise RolloutError("nothing to roll back: no canary and no previous engine")
    previous = await session.scalar(
        select(Deployment)
        .where(Deployment.engine_id == live.previous_engine_id, Deployment.state == "retired")
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    if previous is None:
        raise RolloutError(f"previous engine {live.previous_engine_id} has no retired deployment to restore")
    if is_ready is not None and not await is_ready(previous.triton_model, previous.triton_version):
        raise RolloutError(
            f"previous engine {previous.engine_id} ({previous.triton_model} v{previous.triton_version}) is no longer "
            "loaded in Triton"
        )
    _end(live, "rolled_back", f"manual: {reason}")
    restored = Deployment(
        engine_id=previous.engine_id,
        model_id=previous.model_id,
        dataset_id=previous.dataset_id,
        triton_model=previous.triton_model,
        triton_version=previous.triton_version,
        state="live",
        traffic_percent=100.0,
        previous_engine_id=previous.previous_engine_id,
        requests=0,
        errors=0,
        reason=f"restored by rollback of {live.engine_id}",
    )
    session.add(restored)
    event = DeploymentRolledBack(
        engine_id=live.engine_id, restored_engine_id=previous.engine_id, reason=f"manual: {reason}"
    )
    enqueue(session, event)
    ROLLOUTS.labels("rolled_back").inc()
    return event
