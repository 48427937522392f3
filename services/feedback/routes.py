"""JSON API: the answers log, flag an answer, list and read flags (agent or admin); review and release (admin)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from libs.common.http import Text
from libs.common.runtime import ServiceRuntime
from libs.common.tables import utcnow
from services.feedback import answers, drift_check, flags
from services.feedback.auth import ADMIN_ROLES, AGENT_ROLES, Principal, require
from services.feedback.batcher import ReleaseBatcher

router = APIRouter(prefix="/v1")
Agent = Annotated[Principal, Depends(require(AGENT_ROLES))]
Admin = Annotated[Principal, Depends(require(ADMIN_ROLES))]


class FlagIn(BaseModel):
    answer_id: Text = Field(min_length=1, max_length=64, description="The id the gateway returned with the answer.")
    reason: Text = Field(min_length=1, max_length=2000)
    correction: Text | None = Field(default=None, max_length=8000, description="What the answer should have been.")
    agent: Text | None = Field(default=None, max_length=100, description="The person flagging (default: the key).")


class ReviewIn(BaseModel):
    action: Literal["approve", "edit", "reject"]
    correction: Text | None = Field(default=None, max_length=8000, description="Required for edit.")
    note: Text | None = Field(default=None, max_length=2000)


class ReleaseIn(BaseModel):
    dataset_id: Text | None = Field(default=None, description="Parent dataset; default: the live deployment's.")


def agent_label(principal: Principal, named: str | None) -> str:
    """The flagging person if the client names one, always with the key it came through (names are free text)."""
    return f"{named.strip()} ({principal.key_id})" if named and named.strip() else principal.label


def _rt(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


def answer_filters(
    q: Annotated[Text | None, Query(max_length=200, description="Substring of the question or the answer.")] = None,
    outcome: Annotated[answers.OutcomeFilter | None, Query()] = None,
    engine: Annotated[Text | None, Query(max_length=64)] = None,
    conversation: Annotated[Text | None, Query(max_length=64, description="Every turn of one conversation.")] = None,
    since: Annotated[str | None, Query(description="YYYY-MM-DD or ISO date-time (UTC if naive).")] = None,
    until: Annotated[str | None, Query(description="Exclusive; a bare date includes that whole day.")] = None,
) -> answers.AnswerQuery:
    """The answers-log filters, shared by the JSON API and the page (same names, same errors)."""
    return answers.AnswerQuery(
        text=(q or "").strip() or None,
        outcome=outcome or None,
        engine_id=(engine or "").strip() or None,
        conversation_id=(conversation or "").strip() or None,
        since=answers.parse_bound("since", since, end=False),
        until=answers.parse_bound("until", until, end=True),
    )


Filters = Annotated[answers.AnswerQuery, Depends(answer_filters)]
Page = Annotated[int, Query(ge=1, le=100_000)]
PerPage = Annotated[int, Query(ge=1, le=answers.MAX_PER_PAGE)]


@router.get("/me")
async def me(principal: Agent) -> dict[str, Any]:
    """Who this key is: the page asks once at sign-in, to show the admin-only review queue or not."""
    return {"key_id": principal.key_id, "role": principal.role, "name": principal.name}


@router.get("/answers")
async def get_answers(
    request: Request, _: Agent, filters: Filters, page: Page = 1, per_page: PerPage = 20
) -> dict[str, Any]:
    """Served answers, newest first, filtered; each with its retrieved entries and its newest flag."""
    result = await answers.search_answers(_rt(request).sessions, filters, page=page, per_page=per_page)
    return result.to_json()


@router.post("/flags", status_code=201)
async def create_flag(body: FlagIn, request: Request, principal: Agent) -> dict[str, Any]:
    """Flag an answer; 404 if no such answer was served. Publishes ``feedback.flagged`` (via the outbox)."""
    rt = _rt(request)
    view = await flags.flag_answer(
        rt.sessions,
        rt.artifacts,
        answer_id=body.answer_id,
        reason=body.reason,
        correction=body.correction,
        agent=agent_label(principal, body.agent),
        auto_approve=rt.settings.feedback_auto_approve,  # type: ignore[attr-defined]
    )
    rt.kick_outbox()
    if view.status == "approved":
        request.app.state.batcher.poke()
    return view.to_json()


@router.get("/flags")
async def get_flags(
    request: Request,
    _: Agent,
    status: Annotated[flags.StatusFilter | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> dict[str, Any]:
    wanted = None if status == "all" else status
    views = await flags.list_flags(_rt(request).sessions, status=wanted, limit=limit, offset=offset)
    return {"flags": [v.to_json() for v in views]}


@router.get("/flags/{flag_id}")
async def get_one_flag(flag_id: Text, request: Request, _: Agent) -> dict[str, Any]:
    return (await flags.get_flag(_rt(request).sessions, flag_id)).to_json()


@router.post("/flags/{flag_id}/review")
async def review(flag_id: Text, body: ReviewIn, request: Request, principal: Admin) -> dict[str, Any]:
    view = await flags.review_flag(
        _rt(request).sessions,
        _rt(request).artifacts,
        flag_id,
        action=body.action,
        reviewer=principal.label,
        correction=body.correction,
        note=body.note,
    )
    if view.status == "approved":
        request.app.state.batcher.poke()
    return view.to_json()


@router.post("/releases")
async def release(request: Request, _: Admin, body: ReleaseIn | None = None) -> dict[str, Any]:
    """Release every approved flag now (whatever the threshold): the new dataset, or ``released: false``."""
    batcher: ReleaseBatcher = request.app.state.batcher
    result = await batcher.release(dataset_id=body.dataset_id if body else None)
    if result is None:
        return {"released": False, "reason": "no approved flags to release"}
    return {"released": True, **result.to_json()}


@router.post("/drift/check")
async def drift_check_now(request: Request, _: Admin) -> dict[str, Any]:
    """Compare the last window of customer questions with the live engine's training questions now; the record
    (figures, thresholds crossed, ``event_id`` of the ``quality.drift`` it published or null)."""
    return await request.app.state.drift.check(trigger="api")


@router.get("/drift/clusters")
async def drift_clusters(
    request: Request,
    _: Agent,
    days: Annotated[float, Query(gt=0, le=90, description="How far back, in days.")] = 7,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """Top clusters of handed-off or flagged questions (similar wordings grouped), largest first."""
    since = utcnow() - timedelta(days=days)
    clusters = await drift_check.unanswered_clusters(_rt(request).sessions, since=since, limit=limit)
    return {"since": since.isoformat(), "clusters": clusters}
