"""The agent console: server-rendered HTML (Jinja2) plus a small script that swaps fragments in place.

The page itself carries no data and needs no key. The agent's or admin's key is typed once and kept in the tab's
sessionStorage; the script sends it as ``X-API-Key`` with every fragment request. A header (not a cookie) means
another site cannot make the browser send it (no CSRF), and it never appears in a URL, a log line or history.
Agents read the answers log and flag answers; only admins see and act on the review queue. Every string comes
from ``i18n`` in the locale named by ``?lang=`` (Chinese by default).
"""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from libs.common.auth import Principal
from libs.common.http import Text
from libs.common.knowledge import load_knowledge
from libs.common.tables import utcnow
from services.feedback import answers, drift_check, flags, i18n
from services.feedback.batcher import ReleaseBatcher
from services.feedback.deps import Admin, Agent
from services.feedback.errors import Invalid
from services.feedback.flags import FlagView
from services.feedback.routes import Filters, Page, agent_label

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")  # autoescapes .html: flag text is user input
templates.env.globals["t"] = i18n.translator(i18n.DEFAULT_LOCALE)  # overridden per request by _html
router = APIRouter(include_in_schema=False)
PER_PAGE = 20
CLUSTER_DAYS = 7

SECURITY_HEADERS = {
    # Only our own script and stylesheet run: an answer that contains markup stays text even if escaping failed.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _html(request: Request, name: str, **context: object) -> HTMLResponse:
    lang = i18n.locale_of(request)
    response = templates.TemplateResponse(request, name, {"lang": lang, "t": i18n.translator(lang), **context})
    response.headers.update(SECURITY_HEADERS)
    return response


@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    lang = i18n.locale_of(request)
    return _html(
        request,
        "index.html",
        statuses=flags.STATUSES,
        outcomes=answers.OUTCOMES,
        locales=i18n.LOCALES,
        messages=i18n.CATALOGUE[lang],
    )


@functools.lru_cache(maxsize=16)
def _questions_of(dataset_dir: Path) -> dict[str, str]:
    """entry id → question of a dataset version (versions never change, so this is read once each). Raises when
    the version cannot be read; a failure is not cached, so the next page view reads it again."""
    if not dataset_dir.is_dir():  # load_knowledge reads a missing version as empty, which must not be cached
        raise FileNotFoundError(f"dataset version {dataset_dir} is not in the artifact store")
    return {e.entry_id: e.question for e in load_knowledge(dataset_dir)}


async def _entry_questions(request: Request, rows: list[answers.AnswerRow]) -> dict[str, str]:
    """entry id → question, for the entries the rows' answers retrieved."""
    artifacts = request.app.state.runtime.artifacts
    found: dict[str, str] = {}
    for dataset_id in {r.dataset_id for r in rows if r.dataset_id and r.entry_ids}:
        try:
            found.update(await asyncio.to_thread(_questions_of, artifacts.path("datasets", dataset_id)))
        except (OSError, ValueError):  # unreadable for now: the form shows entry ids instead
            continue
    return found


@router.get("/ui/answers", response_class=HTMLResponse)
async def answer_log(request: Request, _: Agent, filters: Filters, page: Page = 1) -> HTMLResponse:
    result = await answers.search_answers(request.app.state.runtime.sessions, filters, page=page, per_page=PER_PAGE)
    return _html(request, "_answers.html", result=result, entries=await _entry_questions(request, result.rows))


async def _flag(
    request: Request,
    principal: Principal,
    answer_id: str,
    reason: str,
    correction: str | None,
    similar_to: str | None = None,
) -> FlagView:
    """Flag as the API does (auto-approval and the release nudge included), for the page's forms."""
    rt = request.app.state.runtime
    view = await flags.flag_answer(
        rt.sessions,
        rt.artifacts,
        answer_id=answer_id,
        reason=reason,
        agent=agent_label(principal, None),
        correction=correction,
        similar_to=similar_to,
        auto_approve=rt.settings.feedback_auto_approve,
    )
    rt.kick_outbox()
    if view.status == "approved":
        request.app.state.batcher.poke()
    return view


@router.post("/ui/answers/{answer_id}/flag", response_class=HTMLResponse)
async def flag_in_place(
    answer_id: Text,
    request: Request,
    principal: Agent,
    correction: Annotated[Text | None, Form(max_length=8000)] = None,
    reason: Annotated[Text | None, Form(max_length=2000)] = None,
    similar_to: Annotated[Text | None, Form(max_length=64)] = None,
) -> HTMLResponse:
    """Flag one answer from its row in the log and answer the re-rendered row. A handed-off question has no
    answer to fault, so its forms send no reason: the correction becomes a new FAQ entry once approved, or the
    question a similar question of the entry the agent picks (``similar_to``)."""
    if not (correction or "").strip() and not (similar_to or "").strip():
        raise Invalid("correction_required", "correction: give the corrected answer or pick the entry it belongs to")
    if not (reason or "").strip():
        row = await answers.get_row(request.app.state.runtime.sessions, answer_id)
        key = "similar_reason" if similar_to else "handoff_reason"
        reason = i18n.ZH[key] if row.handoff or similar_to else ""
    await _flag(request, principal, answer_id, reason or "", correction, similar_to)
    row = await answers.get_row(request.app.state.runtime.sessions, answer_id)
    return _html(request, "_answer.html", row=row, entries=await _entry_questions(request, [row]))


@router.get("/ui/flags", response_class=HTMLResponse)
async def queue(
    request: Request,
    _: Admin,
    status: Annotated[flags.StatusFilter, Query()] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> HTMLResponse:
    wanted = None if status == "all" else status
    views = await flags.list_flags(request.app.state.runtime.sessions, status=wanted, limit=limit)
    return _html(request, "_queue.html", flags=views, status=status)


@router.get("/ui/unanswered", response_class=HTMLResponse)
async def unanswered(request: Request, _: Agent, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> HTMLResponse:
    sessions = request.app.state.runtime.sessions
    rows = await flags.list_unanswered(sessions, limit=limit)
    # What customers keep asking that the bot cannot answer, grouped: where a new FAQ entry helps most.
    since = utcnow() - timedelta(days=CLUSTER_DAYS)
    clusters = await drift_check.unanswered_clusters(sessions, since=since, limit=10)
    return _html(request, "_unanswered.html", rows=rows, clusters=clusters, cluster_days=CLUSTER_DAYS)


@router.post("/ui/unanswered/{answer_id}", response_class=HTMLResponse)
async def answer_unanswered(
    answer_id: Text,
    request: Request,
    principal: Agent,
    answer: Annotated[Text, Form(min_length=1, max_length=8000)],
) -> HTMLResponse:
    """Propose an answer to a handed-off question: a flag with that correction, reviewed like any other; once
    approved it is a new knowledge entry (live at once) and part of the next dataset version."""
    view = await _flag(request, principal, answer_id, i18n.ZH["handoff_reason"], answer)
    return _html(request, "_flag.html", flag=view)


@router.post("/ui/flags/{flag_id}/review", response_class=HTMLResponse)
async def review(
    flag_id: Text,
    request: Request,
    principal: Admin,
    action: Annotated[Literal["approve", "edit", "reject"], Form()],
    correction: Annotated[Text | None, Form(max_length=8000)] = None,
    note: Annotated[Text | None, Form(max_length=2000)] = None,
) -> HTMLResponse:
    """Review one flag and answer its re-rendered card, which the page puts in place of the old one."""
    view = await flags.review_flag(
        request.app.state.runtime.sessions,
        request.app.state.runtime.artifacts,
        flag_id,
        action=action,
        reviewer=principal.label,
        correction=correction,
        note=note,
    )
    request.app.state.runtime.kick_outbox()  # knowledge.updated staged by an approval or withdrawal goes out now
    if view.status == "approved":
        request.app.state.batcher.poke()
    return _html(request, "_flag.html", flag=view)


@router.post("/ui/releases", response_class=HTMLResponse)
async def release(request: Request, _: Admin) -> HTMLResponse:
    batcher: ReleaseBatcher = request.app.state.batcher
    result = await batcher.release()
    return _html(request, "_release.html", result=result)
