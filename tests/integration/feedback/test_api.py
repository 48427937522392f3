"""The feedback HTTP API end to end: auth, flags (DB first, then feedback.flagged), review, release."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.artifacts import ArtifactStore
from libs.common.tables import Dataset, EventLedger, Flag, OutboxMessage
from services.feedback.settings import Settings
from tests.integration.feedback.conftest import add_answer, add_key, consume, seed_live_dataset, serve

WRONG = "请联系销售。"
FIX = "进入「费用中心」-「发票管理」，勾选订单并填写抬头，电子发票1个工作日内发送到邮箱。"


async def count(sessions: async_sessionmaker, model: type, *where: object) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_auth_matrix(fb_settings: Settings, fb_sessions: async_sessionmaker) -> None:
    answer_id = await add_answer(fb_sessions, "如何开具发票？", WRONG)
    keys = {role: await add_key(fb_sessions, role) for role in ("app", "agent", "admin")}
    revoked = await add_key(fb_sessions, "admin", revoked=True)
    flag = {"answer_id": answer_id, "reason": "wrong answer", "correction": FIX}
    with serve(fb_settings) as fb:
        async with httpx.AsyncClient(base_url=fb.url, timeout=30) as c:
            missing = await c.post("/v1/flags", json=flag)
            assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthenticated"
            assert missing.headers["www-authenticate"] == "Bearer"
            for bad in ("kefu_nope", revoked):
                assert (await c.get("/v1/flags", headers={"Authorization": f"Bearer {bad}"})).status_code == 401
            app_key = {"Authorization": f"Bearer {keys['app']}"}
            assert (await c.post("/v1/flags", json=flag, headers=app_key)).status_code == 403
            assert (await c.get("/v1/flags", headers=app_key)).json()["error"]["code"] == "forbidden"

            agent = {"X-API-Key": keys["agent"]}  # the alternative header
            created = await c.post("/v1/flags", json=flag, headers=agent)
            assert created.status_code == 201, created.text
            flag_id = created.json()["flag_id"]
            assert (await c.get("/v1/flags", headers=agent)).status_code == 200
            review = {"action": "approve"}
            assert (await c.post(f"/v1/flags/{flag_id}/review", json=review, headers=agent)).status_code == 403
            assert (await c.post("/v1/releases", headers=agent)).status_code == 403
            admin = {"Authorization": f"Bearer {keys['admin']}"}
            reviewed = await c.post(f"/v1/flags/{flag_id}/review", json=review, headers=admin)
            assert reviewed.status_code == 200 and reviewed.json()["status"] == "approved"
            assert (await c.get("/ui/flags", headers=agent)).status_code == 403  # the review page is admin-only


async def test_flag_is_stored_then_announced_and_unknown_answer_is_404(
    fb_settings: Settings, fb_sessions: async_sessionmaker
) -> None:
    answer_id = await add_answer(fb_sessions, "如何开具发票？", WRONG, dataset_id="ds-parent")
    agent = {"Authorization": f"Bearer {await add_key(fb_sessions, 'agent')}"}
    with serve(fb_settings) as fb:
        async with httpx.AsyncClient(base_url=fb.url, timeout=30) as c:
            unknown = await c.post("/v1/flags", json={"answer_id": "ans-nope", "reason": "x"}, headers=agent)
            assert unknown.status_code == 404
            assert unknown.json()["error"] == {"code": "answer_not_found", "message": "no answer with id 'ans-nope'"}
            assert await count(fb_sessions, Flag) == 0 and await count(fb_sessions, OutboxMessage) == 0

            empty = await c.post("/v1/flags", json={"answer_id": answer_id, "reason": ""}, headers=agent)
            assert empty.status_code == 400 and empty.json()["error"]["code"] == "invalid_request"

            body = {"answer_id": answer_id, "reason": "outdated", "correction": FIX, "agent": "小王"}
            created = await c.post("/v1/flags", json=body, headers=agent)
            assert created.status_code == 201
            doc = created.json()
            assert doc["status"] == "open" and doc["question"] == "如何开具发票？" and doc["answer"] == WRONG
            assert doc["dataset_id"] == "ds-parent" and doc["engine_id"] == "eng-live"
            assert doc["agent"].startswith("小王 (k")
            event = await consume(fb_settings.kafka_bootstrap, "feedback.flagged", {"flag_id": doc["flag_id"]})
            assert event["answer_id"] == answer_id and event["correction"] == FIX and event["reason"] == "outdated"
            assert await count(fb_sessions, EventLedger, EventLedger.key == answer_id) == 1

            listed = await c.get("/v1/flags", params={"status": "open"}, headers=agent)
            assert [f["flag_id"] for f in listed.json()["flags"]] == [doc["flag_id"]]
            assert (await c.get("/v1/flags", params={"status": "approved"}, headers=agent)).json()["flags"] == []
            assert (await c.get("/v1/flags", params={"status": "bogus"}, headers=agent)).status_code == 400
            assert (await c.get(f"/v1/flags/{doc['flag_id']}", headers=agent)).json()["reason"] == "outdated"
            assert (await c.get("/v1/flags/fl-nope", headers=agent)).status_code == 404


async def test_review_actions(fb_settings: Settings, fb_sessions: async_sessionmaker) -> None:
    dataset_id = await seed_live_dataset(fb_sessions, fb_settings.home)
    admin = {"Authorization": f"Bearer {await add_key(fb_sessions, 'admin')}"}
    answers = [await add_answer(fb_sessions, q, WRONG, dataset_id) for q in ("如何开具发票？", "怎样注销账号？")]
    with serve(fb_settings) as fb:
        async with httpx.AsyncClient(base_url=fb.url, timeout=60) as c:
            with_fix = (
                await c.post(
                    "/v1/flags", json={"answer_id": answers[0], "reason": "r", "correction": FIX}, headers=admin
                )
            ).json()["flag_id"]
            bare = (await c.post("/v1/flags", json={"answer_id": answers[1], "reason": "r"}, headers=admin)).json()
            url = f"/v1/flags/{bare['flag_id']}/review"
            no_fix = await c.post(url, json={"action": "approve"}, headers=admin)
            assert no_fix.status_code == 400 and no_fix.json()["error"]["code"] == "correction_required"
            assert (await c.post(url, json={"action": "edit"}, headers=admin)).status_code == 400
            assert (await c.post(url, json={"action": "maybe"}, headers=admin)).status_code == 400
            edited = (
                await c.post(
                    url,
                    json={"action": "edit", "correction": "在「账号中心」申请注销。", "note": "checked"},
                    headers=admin,
                )
            ).json()
            assert edited["status"] == "approved" and edited["final_correction"] == "在「账号中心」申请注销。"
            assert edited["review_note"] == "checked" and edited["reviewer"].startswith("test admin")
            rejected = (await c.post(f"/v1/flags/{with_fix}/review", json={"action": "reject"}, headers=admin)).json()
            assert rejected["status"] == "rejected" and rejected["final_correction"] is None

            released = (await c.post("/v1/releases", headers=admin)).json()
            assert released["released"] is True and released["flag_ids"] == [bare["flag_id"]]
            assert released["parent_dataset_id"] == dataset_id
            again = await c.post(url, json={"action": "reject"}, headers=admin)
            assert again.status_code == 409 and again.json()["error"]["code"] == "already_released"
            assert (await c.post("/v1/releases", headers=admin)).json() == {
                "released": False,
                "reason": "no approved flags to release",
            }
            # The rejected flag can still be approved later, and goes into the next release.
            assert (await c.post(f"/v1/flags/{with_fix}/review", json={"action": "approve"}, headers=admin)).json()[
                "status"
            ] == "approved"


async def test_auto_approve_and_threshold_release(fb_settings: Settings, fb_sessions: async_sessionmaker) -> None:
    settings = fb_settings.model_copy(update={"feedback_auto_approve": True, "feedback_release_threshold": 2})
    parent = await seed_live_dataset(fb_sessions, settings.home)
    agent = {"Authorization": f"Bearer {await add_key(fb_sessions, 'agent')}"}
    questions = ["如何开具发票？", "人工客服几点上班？"]
    answers = [await add_answer(fb_sessions, q, WRONG, parent) for q in questions]
    fixes = [FIX, "人工客服 7×24 小时在线，控制台右下角点「在线客服」。"]
    with serve(settings) as fb:
        async with httpx.AsyncClient(base_url=fb.url, timeout=30) as c:
            first = (
                await c.post(
                    "/v1/flags", json={"answer_id": answers[0], "reason": "r", "correction": fixes[0]}, headers=agent
                )
            ).json()
            assert first["status"] == "approved" and first["reviewer"] == "auto-approve"
            no_fix = (await c.post("/v1/flags", json={"answer_id": answers[1], "reason": "r"}, headers=agent)).json()
            assert no_fix["status"] == "open"  # nothing to approve without a correction
            await asyncio.sleep(1.0)
            assert await count(fb_sessions, Dataset) == 1  # one approved < threshold 2: no release yet
            second = (
                await c.post(
                    "/v1/flags", json={"answer_id": answers[1], "reason": "r", "correction": fixes[1]}, headers=agent
                )
            ).json()
            # Matched by flag ids: the topic is shared by the whole test session, and the parent id is content-based.
            flag_ids = [first["flag_id"], second["flag_id"]]
            ready = await consume(settings.kafka_bootstrap, "dataset.ready", {"flag_ids": flag_ids}, timeout=60)
    assert ready["parent_dataset_id"] == parent
    assert ready["source"] == f"feedback:{parent}" and ready["counts"]["regression"] == 2
    async with fb_sessions() as session:
        dataset = await session.get(Dataset, ready["dataset_id"])
        flags = {f.flag_id: f for f in (await session.scalars(select(Flag))).all()}
    assert dataset is not None and dataset.parent_dataset_id == parent
    assert flags[first["flag_id"]].status == flags[second["flag_id"]].status == "released"
    assert flags[first["flag_id"]].released_dataset_id == ready["dataset_id"]
    assert flags[no_fix["flag_id"]].status == "open"
    stored = ArtifactStore(settings.home).path("datasets", ready["dataset_id"])
    train = [json.loads(line) for line in (stored / "train.jsonl").read_text().splitlines()]
    assert {r["instruction"]: r["output"] for r in train}["如何开具发票？"] == FIX
    assert len((stored / "regression.jsonl").read_text().splitlines()) == 2


async def test_release_needs_a_live_deployment_or_a_named_dataset(
    fb_settings: Settings, fb_sessions: async_sessionmaker
) -> None:
    parent = await seed_live_dataset(fb_sessions, fb_settings.home, live=False)
    admin = {"Authorization": f"Bearer {await add_key(fb_sessions, 'admin')}"}
    answer_id = await add_answer(fb_sessions, "如何开具发票？", WRONG, parent)
    with serve(fb_settings) as fb:
        async with httpx.AsyncClient(base_url=fb.url, timeout=60) as c:
            flag = (
                await c.post(
                    "/v1/flags", json={"answer_id": answer_id, "reason": "r", "correction": FIX}, headers=admin
                )
            ).json()
            await c.post(f"/v1/flags/{flag['flag_id']}/review", json={"action": "approve"}, headers=admin)
            nothing_live = await c.post("/v1/releases", headers=admin)
            assert nothing_live.status_code == 409 and nothing_live.json()["error"]["code"] == "no_live_deployment"
            missing = await c.post("/v1/releases", json={"dataset_id": "ds-nope"}, headers=admin)
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "dataset_not_found"
            named = await c.post("/v1/releases", json={"dataset_id": parent}, headers=admin)
            assert named.status_code == 200 and named.json()["parent_dataset_id"] == parent


@pytest.mark.parametrize("path", ["/healthz", "/"])
async def test_health_and_page_need_no_key(fb_settings: Settings, path: str) -> None:
    with serve(fb_settings) as fb:
        async with httpx.AsyncClient(base_url=fb.url, timeout=30) as c:
            response = await c.get(path)
    assert response.status_code == 200
    if path == "/":
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert 'type="password"' in response.text
