"""Every route of every HTTP API documents its errors with the one error model (``libs.common.http.ErrorBody``),
and none documents FastAPI's 422 ``HTTPValidationError``: these APIs answer a bad request with a 400 in the one
shape. The apps are only built (no lifespan): reading the OpenAPI document needs no database or broker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from libs.common.http import ErrorBody, install_common
from services.feedback.app import create_app as feedback_app
from services.gateway.app import create_app as gateway_app
from services.ingest.app import create_app as ingest_app

ERROR_REF = "#/components/schemas/ErrorBody"
APPS: dict[str, Callable[[], FastAPI]] = {"gateway": gateway_app, "feedback": feedback_app, "ingest": ingest_app}


def operations(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{method.upper()} {path}", op) for path, ops in spec["paths"].items() for method, op in ops.items()]


@pytest.mark.parametrize("service", APPS)
def test_every_route_declares_its_errors_with_the_one_model(service: str) -> None:
    spec = APPS[service]().openapi()
    assert operations(spec), f"{service} documents no route"
    for name, op in operations(spec):
        errors = {str(s): r for s, r in op["responses"].items() if not str(s).startswith(("1", "2", "3"))}
        # Every route is behind a key and validates its input; "4XX" covers an unknown path or method.
        assert {"400", "401", "403", "4XX", "500"} <= set(errors), name
        for status, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, f"{name} {status}: {schema}"
            assert response["description"], f"{name} {status} has no description"
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    detail = spec["components"]["schemas"]["ErrorDetail"]
    assert set(detail["properties"]) == set(detail["required"]) == {"code", "message"}


def test_route_specific_errors_are_documented() -> None:
    chat = gateway_app().openapi()["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"404", "413", "429", "503"} <= set(chat)  # the OpenAI-compatible endpoint's own refusals
    rollback = gateway_app().openapi()["paths"]["/v1/deployments/rollback"]["post"]["responses"]
    assert "cannot_roll_back" in rollback["409"]["description"]
    upload = ingest_app().openapi()["paths"]["/v1/datasets"]["post"]["responses"]
    assert {"413", "422"} <= set(upload)
    review = feedback_app().openapi()["paths"]["/v1/flags/{flag_id}/review"]["post"]["responses"]
    assert {"404", "409"} <= set(review)


def test_what_is_documented_is_what_is_sent() -> None:
    app = FastAPI()
    install_common(app, service="test")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("/secret/path/in/the/message")

    @app.get("/number/{n}")
    async def number(n: int) -> dict:
        return {"n": n}

    client = TestClient(app, raise_server_exceptions=False)
    for path, status, code in [("/boom", 500, "internal"), ("/number/x", 400, "invalid_request"), ("/no", 404, None)]:
        response = client.get(path)
        assert response.status_code == status, path
        body = ErrorBody.model_validate(response.json())  # exactly the model: no other fields
        assert body.model_dump() == response.json() and (code is None or body.error.code == code)
    assert "secret" not in client.get("/boom").text
