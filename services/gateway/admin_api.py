"""Admin HTTP API (role ``admin``): API keys, deployments and rollback, request-length statistics.

``rollout`` raises ``RolloutError`` (no HTTP in the domain); each route says what it answers with (409 here).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from libs.common.apikeys import ROLES, create_key
from libs.common.http import Text, error_responses
from libs.common.tables import Deployment
from services.gateway.deps import Admin, GatewayDep, SessionDep
from services.gateway.errors import GatewayError, invalid
from services.gateway.rollout import RolloutError, hold, promote, rollback
from services.gateway.stats import length_stats

router = APIRouter(prefix="/v1")
#: Every admin call: 401 without a key, 403 for a role other than admin, 429 over the key's rate limit.
AUTH = (401, 403, 429)


class KeyRequest(BaseModel):
    role: str
    name: Text = Field(default="", max_length=128)
    rate_limit_per_minute: int | None = Field(default=None, ge=1, le=10**7)


class ReasonRequest(BaseModel):
    reason: Text = Field(default="operator request", max_length=2000)


class HoldRequest(BaseModel):
    hold: bool = Field(default=True, description="false releases the hold: the evidence decides again.")
    reason: Text = Field(default="operator request", max_length=2000)


@router.post("/keys", status_code=201, responses=error_responses(*AUTH))
async def new_key(body: KeyRequest, session: SessionDep, _admin: Admin) -> dict[str, Any]:
    """Create an API key; the key itself is in this response only (the database keeps its hash)."""
    if body.role not in ROLES:
        raise invalid(f"role must be one of {', '.join(ROLES)}")
    async with session.begin():
        key_id, key = await create_key(
            session, body.role, name=body.name, rate_limit_per_minute=body.rate_limit_per_minute
        )
    return {"key_id": key_id, "key": key, "role": body.role, "name": body.name}


@router.get("/deployments", responses=error_responses(*AUTH))
async def deployments(
    session: SessionDep, _admin: Admin, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, Any]:
    """Recent deployments, newest first: which engine is live, which is the canary, what was rolled back."""
    rows = (await session.scalars(select(Deployment).order_by(Deployment.id.desc()).limit(limit))).all()
    fields = (
        "engine_id",
        "model_id",
        "dataset_id",
        "triton_model",
        "triton_version",
        "state",
        "traffic_percent",
        "previous_engine_id",
        "requests",
        "errors",
        "reason",
        "started_at",
        "ended_at",
        "held",
        "evidence",
    )
    return {"deployments": [{f: getattr(r, f) for f in fields} for r in rows]}


@router.post(
    "/deployments/rollback",
    responses=error_responses(*AUTH, (409, "cannot_roll_back: no canary, and no previous engine to put back")),
)
async def roll_back(body: ReasonRequest, gw: GatewayDep, session: SessionDep, principal: Admin) -> dict[str, Any]:
    """Drop the canary, or put the previous engine back if there is no canary (409 if neither is possible)."""
    try:
        async with session.begin():
            event = await rollback(session, f"{body.reason} (key {principal.key_id})", gw.is_ready)
    except RolloutError as exc:
        raise GatewayError(409, "cannot_roll_back", str(exc)) from None
    gw.runtime.kick_outbox()
    await gw.router.refresh()
    return event.model_dump(mode="json")


@router.post("/deployments/promote", responses=error_responses(*AUTH, (409, "cannot_promote: there is no canary")))
async def promote_canary(body: ReasonRequest, gw: GatewayDep, session: SessionDep, principal: Admin) -> dict[str, Any]:
    """Promote the canary now, whatever its evidence says (409 if there is no canary)."""
    try:
        async with session.begin():
            event = await promote(session, f"{body.reason} (key {principal.key_id})")
    except RolloutError as exc:
        raise GatewayError(409, "cannot_promote", str(exc)) from None
    gw.runtime.kick_outbox()
    await gw.router.refresh()
    return event.model_dump(mode="json")


@router.post("/deployments/hold", responses=error_responses(*AUTH, (409, "cannot_hold: there is no canary")))
async def hold_canary(body: HoldRequest, session: SessionDep, principal: Admin) -> dict[str, Any]:
    """Hold the canary at its share (no automatic verdict) or release the hold (409 if there is no canary)."""
    try:
        async with session.begin():
            dep = await hold(session, body.hold, f"{body.reason} (key {principal.key_id})")
            return {"engine_id": dep.engine_id, "held": dep.held, "reason": dep.reason}
    except RolloutError as exc:
        raise GatewayError(409, "cannot_hold", str(exc)) from None


@router.get("/stats/lengths", responses=error_responses(*AUTH))
async def lengths(
    session: SessionDep,
    _admin: Admin,
    since: Annotated[datetime | None, Query(description="Only answers from this time on (ISO 8601).")] = None,
) -> dict[str, Any]:
    """Prompt / completion / prompt+completion token lengths of answered requests, to choose max_length from."""
    return await length_stats(session, since=since)
