"""Feedback's domain raises errors without HTTP statuses; the routes map each kind to its status in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from libs.common.http import install_common
from services.feedback import errors
from services.feedback.routes import STATUS_OF, domain_error

SERVICE = Path(errors.__file__).parent


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.Invalid("invalid_request", "since: must be before until"), 400),
        (errors.not_found("flag", "fl-1"), 404),
        (errors.Conflict("already_released", "flag fl-1 is already in dataset d1"), 409),
        (errors.Unusable("no_usable_corrections", "no correction survives cleaning"), 422),
        (errors.FeedbackError("refused", "a refusal of no particular kind"), 400),
    ],
)
def test_each_kind_answers_its_status(exc: errors.FeedbackError, status: int) -> None:
    app = FastAPI()
    install_common(app, service="test")
    app.add_exception_handler(errors.FeedbackError, domain_error)

    @app.get("/x")
    async def refuse() -> None:
        raise exc

    response = TestClient(app).get("/x")
    assert response.status_code == status
    assert response.json() == {"error": {"code": exc.code, "message": exc.message}}


def test_every_kind_has_a_status() -> None:
    kinds = {cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.FeedbackError)}
    assert kinds == set(STATUS_OF)


def test_domain_modules_know_no_http() -> None:
    """Only the routes, the console and the composition root may speak HTTP; the rest raise domain errors."""
    http_aware = {"routes.py", "web.py", "app.py", "deps.py"}
    for path in SERVICE.glob("*.py"):
        if path.name in http_aware:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert node.module not in ("fastapi", "libs.common.http"), path.name
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("ApiError", "FeedbackError"):
                first = node.args[0] if node.args else None
                assert not isinstance(getattr(first, "value", None), int), f"{path.name}:{node.lineno}"
