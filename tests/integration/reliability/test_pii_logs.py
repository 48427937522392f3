"""PII never reaches a log: planted phone numbers, emails, ID and bank card numbers go through the ingest CLI, the
ingest upload API and a gateway chat with every logger at DEBUG, and appear in no log line and no CLI output."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from httpx import ASGITransport

from libs.common.apikeys import create_key
from services.ingest.app import create_app as ingest_app
from services.ingest.settings import Settings as IngestSettings
from tests.integration.gateway.conftest import RunningGateway

pytestmark = pytest.mark.slow

PLANTED = ["13912345678", "zhang.san@example.com", "440305199003071236", "6222021234567890128"]


def pii_rows(tmp_path: Path) -> Path:
    rows = [
        {
            "question": f"我的手机号{PLANTED[0]}收不到验证码怎么办？",
            "answer": "请确认手机信号正常，稍后重试或联系客服。",
        },
        {"question": "发票寄到哪个邮箱？", "answer": f"已发送至 {PLANTED[1]}，请查收。"},
        {"question": f"身份证{PLANTED[2]}能实名认证吗？", "answer": "可以，在控制台「实名认证」页面上传证件照片。"},
        {"question": "退款会退到哪张卡？", "answer": f"原路退回到尾号为 {PLANTED[3][-4:]} 的卡 {PLANTED[3]}。"},
        {"question": "客服热线是多少？", "answer": "请拨打 400-820-8820，7×24 小时服务。"},
    ]
    path = tmp_path / "pii.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return path


def assert_clean(text: str, where: str) -> None:
    leaked = [p for p in PLANTED if p in text]
    assert not leaked, f"{where} contains planted PII {leaked}"


def test_ingest_cli_output_has_no_pii(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "kefu", "ingest", str(pii_rows(tmp_path)), "--offline", "--out", str(out)],
        capture_output=True, text=True, timeout=120, env={"KEFU_HOME": str(tmp_path / "home"), "PATH": "/usr/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_clean(proc.stdout + proc.stderr, "ingest CLI output")
    written = "".join(p.read_text(encoding="utf-8") for p in out.iterdir() if p.is_file())
    assert_clean(written, "the dataset")
    assert "400-820-8820" in written  # the hotline is not personal data


async def test_upload_api_and_chat_log_no_pii(
    tmp_path: Path, settings, db_sessions, gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with db_sessions() as session, session.begin():
        _, data_key = await create_key(session, "data", name="pii test uploader")
    app = ingest_app(IngestSettings(**{**settings.model_dump(), "home": tmp_path / "home"}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=ASGITransport(app=app), base_url="http://ingest") as client:
            data = pii_rows(tmp_path).read_bytes()
            resp = await client.post(
                "/v1/datasets", files={"file": ("pii.jsonl", data)}, headers={"Authorization": f"Bearer {data_key}"}
            )
            assert resp.status_code == 201, resp.text
            assert_clean(resp.text, "the upload response")
        async with httpx.AsyncClient(timeout=60) as client:
            chat = await client.post(
                f"{gateway.http}/chat/completions",
                headers=gateway.auth("app"),
                json={"model": "kefu-chat", "messages": [{"role": "user", "content": f"我的卡号{PLANTED[3]}被冻结了"}]},
            )
            assert chat.status_code == 200, chat.text
    assert caplog.records, "nothing was logged: the check would be empty"
    assert_clean("\n".join(r.getMessage() for r in caplog.records), "the logs")
