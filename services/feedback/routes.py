"""JSON API: the answers log, flag an answer, list and read flags (agent or admin); review and release (admin).

The domain modules raise ``FeedbackError`` subclasses and know no HTTP; ``STATUS_OF`` says what each answers with,
for this API and the console alike (``app.py`` installs ``domain_error`` for the whole app).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from libs.common.auth import Principal
from libs.common.http import Text, error_body, error_responses
from libs.common.tables import utcnow
from services.feedback import answers, drift_check, flags
from services.feedback.deps import Admin, Agent, BatcherDep, DriftDep, RuntimeDep, SettingsDep
from services.feedback.errors import Conflict, FeedbackError, Invalid, NotFound, Unusable

router = APIRouter(prefix="/v1")
#: Domain refusals → HTTP statuses; a bare ``FeedbackError`` is the client's 400.
STATUS_OF: dict[type[FeedbackError], int] = {
    FeedbackError: 400,
    Invalid: 400,
    NotFound: 404,
    Conflict: 409,
    Unusable: 422,
}
#: Every call needs a key: 401 without one, 403 for a role not admitted.
AUTH = (401, 403)


async def domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FeedbackError)  # registered for FeedbackError only
    status = next(STATUS_OF[cls] for cls in type(exc).__mro__ if cls in STATUS_OF)
    return JSONResponse(error_body(exc.code, exc.message), status_code=status)


class FlagIn(BaseModel):
    answer_id: Text = Field(min_length=1, max_length=64, description="The id the gateway returned with the answer.")
    reason: Text = Field(min_length=1, max_length=2000)
    correction: Text | None = Field(default=None, max_length=8000, description="What the answer should have been.")
    similar_to: Text | None = Field(
        default=None,
        max_length=64,
        description="Instead of a correction: the knowledge entry (kb-…) this question asks about; once approved, the "
        "question becomes one of its similar questions (live at once, and in the next dataset version).",
    )
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


@router.get("/me", responses=error_responses(*AUTH))
async def me(principal: Agent) -> dict[str, Any]:
    """Who this key is: the page asks once at sign-in, to show the admin-only review queue or not."""
    return {"key_id": principal.key_id, "role": principal.role, "name": principal.name}


@router.get("/answers", responses=error_responses(*AUTH))
async def get_answers(
    rt: RuntimeDep, _: Agent, filters: Filters, page: Page = 1, per_page: PerPage = 20
) -> dict[str, Any]:
    """Served answers, newest first, filtered; each with its retrieved entries and its newest flag."""
    result = await answers.search_answers(rt.sessions, filters, page=page, per_page=per_page)
    return result.to_json()


@router.post(
    "/flags",
    status_code=201,
    responses=error_responses(*AUTH, (404, "No answer with that id, or no knowledge entry named by similar_to")),
)
async def create_flag(
    body: FlagIn, rt: RuntimeDep, settings: SettingsDep, principal: Agent, batcher: BatcherDep
) -> dict[str, Any]:
    """Flag an answer; 404 if no such answer was served. Publishes ``feedback.flagged`` (via the outbox)."""
    view = await flags.flag_answer(
        rt.sessions,
        rt.artifacts,
        answer_id=body.answer_id,
        reason=body.reason,
        correction=body.correction,
        similar_to=body.similar_to,
        agent=agent_label(principal, body.agent),
        auto_approve=settings.feedback_auto_approve,
    )
    rt.kick_outbox()
    if view.status == "approved":
        batcher.poke()
    return view.to_json()


@router.get("/flags", responses=error_responses(*AUTH))
async def get_flags(
    rt: RuntimeDep,
    _: Agent,
    status: Annotated[flags.StatusFilter | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> dict[str, Any]:
    wanted = None if status == "all" else status
    views = await flags.list_flags(rt.sessions, status=wanted, limit=limit, offset=offset)
    return {"flags": [v.to_json() for v in views]}


@router.get("/flags/{flag_id}", responses=error_responses(*AUTH, (404, "No flag with that id")))
async def get_one_flag(flag_id: Text, rt: RuntimeDep, _: Agent) -> dict[str, Any]:
    return (await flags.get_flag(rt.sessions, flag_id)).to_json()


@router.post(
    "/flags/{flag_id}/review",
    responses=error_responses(
        (400, "Invalid request, or correction_required: approving a flag without a correction, an edit without one"),
        *AUTH,
        (404, "No flag with that id"),
        (409, "already_released: the flag is in a dataset version already"),
    ),
)
async def review(
    flag_id: Text, body: ReviewIn, rt: RuntimeDep, principal: Admin, batcher: BatcherDep
) -> dict[str, Any]:
    view = await flags.review_flag(
        rt.sessions,
        rt.artifacts,
        flag_id,
        action=body.action,
        reviewer=principal.label,
        correction=body.correction,
        note=body.note,
    )
    rt.kick_outbox()  # an approval or withdrawal staged knowledge.updated: the gateways apply it at once
    if view.status == "approved":
        batcher.poke()
    return view.to_json()


@router.post(
    "/releases",
    responses=error_responses(
        *AUTH,
        (404, "dataset_not_found: the parent dataset is not in the artifact store"),
        (409, "no_live_deployment: no dataset named and nothing live to build on"),
        (422, "no_usable_corrections / bad_release: nothing usable survives cleaning"),
    ),
)
async def release(_: Admin, batcher: BatcherDep, body: ReleaseIn | None = None) -> dict[str, Any]:
    """Release every approved flag now (whatever the threshold): the new dataset, or ``released: false``."""
    result = await batcher.release(dataset_id=body.dataset_id if body else None)
    if result is None:
        return {"released": False, "reason": "no approved flags to release"}
    return {"released": True, **result.to_json()}


@router.post(
    "/drift/check",
    responses=error_responses(*AUTH, (409, "no_live_deployment / dataset_missing: nothing to compare with")),
)
async def drift_check_now(_: Admin, drift: DriftDep) -> dict[str, Any]:
    """Compare the last window of customer questions with the live engine's training questions now; the record
    (figures, thresholds crossed, ``event_id`` of the ``quality.drift`` it published or null)."""
    return await drift.check(trigger="api")


@router.get("/drift/clusters", responses=error_responses(*AUTH))
async def drift_clusters(
    rt: RuntimeDep,
    _: Agent,
    days: Annotated[float, Query(gt=0, le=90, description="How far back, in days.")] = 7,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """Top clusters of handed-off or flagged questions (similar wordings grouped), largest first."""
    since = utcnow() - timedelta(days=days)
    clusters = await drift_check.unanswered_clusters(rt.sessions, since=since, limit=limit)
    return {"since": since.isoformat(), "clusters": clusters}
