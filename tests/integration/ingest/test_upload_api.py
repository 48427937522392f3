"""The upload API (``POST /v1/datasets``) with its real lifespan (PostgreSQL, Tansu): who may upload, and every
limit answered as a 4xx in the common error shape that names the limit."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from httpx import ASGITransport

from libs.common.apikeys import create_key
from libs.common.settings import KefuSettings
from libs.common.tables import utcnow
from services.ingest.app import create_app
from services.ingest.settings import Settings

ROWS = [
    {"question": "如何申请发票？", "answer": "在「费用中心」-「发票管理」中申请开票。"},
    {"question": "忘记密码怎么办？", "answer": "在登录页点击「忘记密码」，通过手机号重置。"},
    {"question": "支持哪些付款方式？", "answer": "支持支付宝、微信支付和银行转账。"},
]
JSONL = "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS).encode()


async def keys_by_role(db_sessions) -> dict[str, str]:  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    from libs.common.tables import ApiKey

    keys: dict[str, str] = {}
    async with db_sessions() as session, session.begin():
        for role in ("app", "agent", "data", "admin", "revoked"):
            key_id, keys[role] = await create_key(session, "data" if role == "revoked" else role, name=role)
            if role == "revoked":
                await session.flush()
                await session.execute(update(ApiKey).where(ApiKey.key_id == key_id).values(revoked_at=utcnow()))
    return keys


async def client_for(settings: KefuSettings, tmp_path: Path, **limits: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(**{**settings.model_dump(), "home": tmp_path / "home", **limits}))
    transport = ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://i") as client:
        yield client


@pytest.fixture
async def ingest(settings: KefuSettings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(settings, tmp_path):
        yield client


@pytest.fixture
async def small(settings: KefuSettings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Tight limits: 64 KiB files, 3 rows, 0.3 s of SQLite query."""
    limits = {"ingest_max_upload_bytes": 64 * 1024, "ingest_max_rows": 3, "ingest_query_timeout_seconds": 0.3}
    async for client in client_for(settings, tmp_path, **limits):
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def error(resp: httpx.Response) -> dict[str, str]:
    assert set(resp.json()) == {"error"}, resp.text
    return resp.json()["error"]


async def test_role_matrix(ingest: httpx.AsyncClient, db_sessions) -> None:  # type: ignore[no-untyped-def]
    keys = await keys_by_role(db_sessions)
    upload = {"files": {"file": ("faq.jsonl", JSONL)}}
    missing = await ingest.post("/v1/datasets", **upload)
    assert missing.status_code == 401 and error(missing)["code"] == "unauthenticated"
    assert missing.headers["www-authenticate"] == "Bearer"
    for bad in ("kefu_knope_x", keys["revoked"]):
        assert (await ingest.post("/v1/datasets", **upload, headers=bearer(bad))).status_code == 401
    for role in ("app", "agent"):
        refused = await ingest.post("/v1/datasets", **upload, headers=bearer(keys[role]))
        assert refused.status_code == 403, refused.text
        assert error(refused) == {"code": "forbidden", "message": f"role {role!r} may not do this; needs admin or data"}
    created = await ingest.post("/v1/datasets", **upload, headers={"X-API-Key": keys["data"]})
    assert created.status_code == 201, created.text
    assert created.json()["card"]["counts"]["kept"] == 3
    again = await ingest.post("/v1/datasets", **upload, headers=bearer(keys["admin"]))
    assert again.status_code == 201 and again.json()["dataset_id"] == created.json()["dataset_id"]
    assert (await ingest.get("/healthz")).status_code == 200  # probes need no key


async def test_size_row_and_query_time_limits(small: httpx.AsyncClient, db_sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = bearer((await keys_by_role(db_sessions))["data"])

    big = await small.post("/v1/datasets", files={"file": ("big.jsonl", b"x" * (64 * 1024 + 1))}, headers=key)
    assert big.status_code == 413 and error(big)["code"] == "too_large"
    assert "65536 bytes" in error(big)["message"] and "KEFU_INGEST_MAX_UPLOAD_BYTES" in error(big)["message"]
    # Far over the limit: refused by the body limit before the multipart body is read (declared, then chunked).
    huge = await small.post("/v1/datasets", files={"file": ("huge.jsonl", b"x" * (3 * 1024 * 1024))}, headers=key)
    assert huge.status_code == 413 and "KEFU_INGEST_MAX_UPLOAD_BYTES" in error(huge)["message"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="c.jsonl"\r\n\r\n'
        for _ in range(40):
            yield b"y" * 65536

    chunked = await small.post(
        "/v1/datasets", content=chunks(), headers={**key, "content-type": "multipart/form-data; boundary=b"}
    )
    assert chunked.status_code == 413 and error(chunked)["code"] == "too_large"

    four = JSONL + b"\n" + json.dumps({"question": "第四个问题？", "answer": "第四个答案。"}).encode()
    rows = await small.post("/v1/datasets", files={"file": ("four.jsonl", four)}, headers=key)
    assert rows.status_code == 413, rows.text
    assert error(rows) == {
        "code": "too_many_rows",
        "message": "four.jsonl: more than 3 rows (row limit 3) (KEFU_INGEST_MAX_ROWS)",
    }

    db = tmp_path / "faq.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE faq (q TEXT, a TEXT)")
        conn.executemany("INSERT INTO faq VALUES (?, ?)", [(r["question"], r["answer"]) for r in ROWS])
    conn.close()
    sqlite_file = {"file": ("faq.db", db.read_bytes())}
    endless = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) AS question, 1 AS answer FROM n"
    )
    slow = await small.post("/v1/datasets", files=sqlite_file, data={"query": endless}, headers=key)
    assert slow.status_code == 422, slow.text
    assert error(slow)["code"] == "query_timeout"
    assert "0.3 s" in error(slow)["message"] and "KEFU_INGEST_QUERY_TIMEOUT_SECONDS" in error(slow)["message"]

    many = "SELECT q AS question, a AS answer FROM faq, (SELECT 1 UNION ALL SELECT 2)"
    assert (await small.post("/v1/datasets", files=sqlite_file, data={"query": many}, headers=key)).status_code == 413

    two = "SELECT q AS question, a AS answer FROM faq; DROP TABLE faq"
    multi = await small.post("/v1/datasets", files=sqlite_file, data={"query": two}, headers=key)
    assert multi.status_code == 400 and "multi-statement queries are refused" in error(multi)["message"]
    assert str(tmp_path) not in multi.text and "/tmp/" not in multi.text  # no server paths in errors

    ok = await small.post(
        "/v1/datasets", files=sqlite_file, data={"query": "SELECT q AS question, a AS answer FROM faq;"}, headers=key
    )
    assert ok.status_code == 201, ok.text

    pg = await small.post(
        "/v1/datasets", files={"file": ("x.txt", b"x")}, data={"format": "postgres", "query": "SELECT 1"}, headers=key
    )
    assert pg.status_code == 400 and "format must be one of" in error(pg)["message"]
