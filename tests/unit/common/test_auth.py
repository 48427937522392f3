"""One ``Principal`` and one role vocabulary (``libs.common.auth``), used by every service that checks keys, with
the same refusals everywhere: 401 (+ ``WWW-Authenticate``) for no/unknown key, 403 naming the roles needed."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Annotated, get_args

import grpc
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from libs.common import deps
from libs.common.apikeys import ROLES
from libs.common.auth import (
    ADMIN_ROLES,
    AGENT_ROLES,
    CHAT_ROLES,
    MISSING_KEY,
    UNKNOWN_KEY,
    UPLOAD_ROLES,
    Forbidden,
    Principal,
    Unauthenticated,
    authenticate,
)
from libs.common.http import install_common
from services.feedback import deps as feedback_deps
from services.gateway import access, answering
from services.gateway import deps as gateway_deps
from services.gateway.access import Access
from services.gateway.errors import GatewayError
from services.ingest import deps as ingest_deps

ROOT = Path(__file__).resolve().parents[3]
KEYS = {"k-app": Principal("kapp", "app"), "k-admin": Principal("kadm", "admin", "ops", 5)}


async def lookup(key: str) -> Principal | None:
    return KEYS.get(key)


async def caller(key: Annotated[str | None, Depends(deps.presented_key)]) -> Principal:
    return await authenticate(key, lookup, ADMIN_ROLES)


def test_every_service_uses_the_one_principal() -> None:
    annotated = [feedback_deps.Agent, feedback_deps.Admin, ingest_deps.Uploader, gateway_deps.Admin]
    assert all(get_args(dep)[0] is Principal for dep in annotated)
    assert access.Principal is Principal and answering.Principal is Principal


def test_no_service_defines_its_own_principal_or_role_set() -> None:
    found = []
    for path in [*ROOT.joinpath("services").rglob("*.py"), *ROOT.joinpath("libs").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name == "Principal":
                found.append(str(path.relative_to(ROOT)))
            # A role set spelled out as strings ({"app", "admin"}) is a second vocabulary in the making.
            if isinstance(node, ast.Set) and {getattr(e, "value", None) for e in node.elts} <= set(ROLES):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} role set")
    assert found == ["libs/common/auth.py"]


def test_the_role_vocabulary_is_unchanged() -> None:
    assert ROLES == ("app", "agent", "data", "admin")
    admitted = {"chat": CHAT_ROLES, "agent": AGENT_ROLES, "upload": UPLOAD_ROLES, "admin": ADMIN_ROLES}
    assert admitted == {
        "chat": {"app", "admin"},
        "agent": {"agent", "admin"},
        "upload": {"data", "admin"},
        "admin": {"admin"},
    }
    assert "agent" in AGENT_ROLES and "data" not in AGENT_ROLES  # roles read from the DB are plain strings


async def test_authenticate() -> None:
    with pytest.raises(Unauthenticated, match="API key is required"):
        await authenticate(None, lookup, CHAT_ROLES)
    with pytest.raises(Unauthenticated, match="unknown or revoked"):
        await authenticate("k-nope", lookup, CHAT_ROLES)
    with pytest.raises(Forbidden) as refused:
        await authenticate("k-app", lookup, UPLOAD_ROLES)
    assert str(refused.value) == "role 'app' may not do this; needs admin or data"
    assert await authenticate("k-admin", lookup, UPLOAD_ROLES) == KEYS["k-admin"]
    assert KEYS["k-admin"].label == "ops (kadm)" and KEYS["k-app"].label == "kapp"


def test_http_answers_auth_errors_in_the_one_shape() -> None:
    app = FastAPI()
    install_common(app, service="test")

    @app.get("/who")
    async def who(principal: Annotated[Principal, Depends(caller)]) -> dict:
        return {"key_id": principal.key_id}

    client = TestClient(app)
    missing = client.get("/who")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json() == {"error": {"code": "unauthenticated", "message": MISSING_KEY}}
    unknown = client.get("/who", headers={"X-API-Key": "k-nope"})
    assert unknown.status_code == 401 and unknown.json()["error"]["message"] == UNKNOWN_KEY
    refused = client.get("/who", headers={"Authorization": "Bearer k-app"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert client.get("/who", headers={"Authorization": "Bearer k-admin"}).json() == {"key_id": "kadm"}


async def test_gateway_refusals_carry_http_and_grpc_codes() -> None:
    gate = Access(None, default_rate_per_minute=1, cache_seconds=60)  # type: ignore[arg-type]
    gate.lookup = lookup  # type: ignore[method-assign]
    cases = [(None, 401, grpc.StatusCode.UNAUTHENTICATED), ("Bearer k-nope", 401, grpc.StatusCode.UNAUTHENTICATED)]
    cases.append(("Bearer k-app", 403, grpc.StatusCode.PERMISSION_DENIED))
    for header, status, code in cases:
        with pytest.raises(GatewayError) as caught:
            await gate.authorize(header, ADMIN_ROLES)
        assert (caught.value.status, caught.value.grpc_code) == (status, code)
    assert caught.value.message == "role 'app' may not do this; needs admin"
    assert await gate.authorize("Bearer k-app", CHAT_ROLES) == KEYS["k-app"]
    with pytest.raises(GatewayError) as limited:  # the second call within a minute, at 1 a minute
        await gate.authorize("Bearer k-app", CHAT_ROLES)
    assert limited.value.status == 429
