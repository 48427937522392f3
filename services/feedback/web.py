"""The review page: server-rendered HTML (Jinja2) plus a small script that swaps fragments in place.

The page itself carries no data and needs no key. The admin key is typed once and kept in the tab's
sessionStorage; the script sends it as ``X-API-Key`` with every fragment request. A header (not a cookie) means
another site cannot make the browser send it (no CSRF), and it never appears in a URL, a log line or history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from services.feedback import flags
from services.feedback.auth import ADMIN_ROLES, Principal, require
from services.feedback.batcher import ReleaseBatcher

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")  # autoescapes .html: flag text is user input
router = APIRouter(include_in_schema=False)
Admin = Annotated[Principal, Depends(require(ADMIN_ROLES))]

SECURITY_HEADERS = {
    # Only our own script and stylesheet run: an answer that contains markup stays text even if escaping failed.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _html(request: Request, name: str, **context: object) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context)
    response.headers.update(SECURITY_HEADERS)
    return response


@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    return _html(request, "index.html", statuses=flags.STATUSES)


@router.get("/ui/flags", response_class=HTMLResponse)
async def queue(
    request: Request,
    _: Admin,
    status: Annotated[flags.Status, Query()] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> HTMLResponse:
    views = await flags.list_flags(request.app.state.runtime.sessions, status=status or None, limit=limit)
    return _html(request, "_queue.html", flags=views, status=status)


@router.get("/ui/unanswered", response_class=HTMLResponse)
async def unanswered(request: Request, _: Admin, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> HTMLResponse:
    rows = await flags.list_unanswered(request.app.state.runtime.sessions, limit=limit)
    return _html(request, "_unanswered.html", rows=rows)


@router.post("/ui/unanswered/{answer_id}", response_class=HTMLResponse)
async def answer_unanswered(
    answer_id: str,
    request: Request,
    principal: Admin,
    answer: Annotated[str, Form(min_length=1, max_length=8000)],
) -> HTMLResponse:
    """Propose an answer to a handed-off question: a flag with that correction, reviewed like any other; once
    approved it is a new knowledge entry (live at once) and part of the next dataset version."""
    rt = request.app.state.runtime
    view = await flags.flag_answer(
        rt.sessions,
        rt.artifacts,
        answer_id=answer_id,
        reason="转人工的问题：新增知识条目",
        agent=principal.label,
        correction=answer,
        auto_approve=rt.settings.feedback_auto_approve,
    )
    rt.kick_outbox()
    if view.status == "approved":
        request.app.state.batcher.poke()
    return _html(request, "_flag.html", flag=view)


@router.post("/ui/flags/{flag_id}/review", response_class=HTMLResponse)
async def review(
    flag_id: str,
    request: Request,
    principal: Admin,
    action: Annotated[Literal["approve", "edit", "reject"], Form()],
    correction: Annotated[str | None, Form(max_length=8000)] = None,
    note: Annotated[str | None, Form(max_length=2000)] = None,
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
    if view.status == "approved":
        request.app.state.batcher.poke()
    return _html(request, "_flag.html", flag=view)


@router.post("/ui/releases", response_class=HTMLResponse)
async def release(request: Request, _: Admin) -> HTMLResponse:
    batcher: ReleaseBatcher = request.app.state.batcher
    result = await batcher.release()
    return _html(request, "_release.html", result=result)
