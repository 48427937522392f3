"""The question-drift check on real PostgreSQL and Tansu: ordinary traffic stays quiet; a window of questions far
from the knowledge base publishes ``quality.drift`` (through the outbox) with its figures and clusters."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from typer.testing import CliRunner

from kefu.cli import app
from kefu.report_data import drift_series
from libs.common.tables import Answer, Deployment, EventLedger, Flag
from services.feedback import drift_history
from services.feedback.drift_check import DriftScheduler
from services.feedback.settings import Settings
from tests.integration.feedback.conftest import SAMPLE, add_key, consume, seed_live_dataset, serve

UNSEEN = ["火星旅游签证怎么办理", "推荐一部好看的电影", "红烧肉怎么做才好吃", "明天北京天气如何", "养猫要注意什么"]


async def _answers(sessions: async_sessionmaker, questions: list[str], *, handoff: bool, flag: int = 0) -> None:
    async with sessions() as session, session.begin():
        for i, q in enumerate(questions):
            answer_id = f"ans-{uuid.uuid4().hex[:12]}"
            session.add(Answer(answer_id=answer_id, question=q, answer="", engine_id="eng-live", handoff=handoff))
            if i < flag:
                session.add(Flag(flag_id=f"flg-{uuid.uuid4().hex[:10]}", answer_id=answer_id, reason="x", agent="a"))


async def test_far_questions_publish_quality_drift(fb_settings: Settings, fb_sessions: async_sessionmaker) -> None:
    dataset_id = await seed_live_dataset(fb_sessions, fb_settings.home)
    admin = {"Authorization": f"Bearer {await add_key(fb_sessions, 'admin')}"}
    agent = {"Authorization": f"Bearer {await add_key(fb_sessions, 'agent')}"}
    sample = (SAMPLE.parent / "cloudmax_questions.jsonl").read_text(encoding="utf-8").splitlines()
    in_scope = [json.loads(line)["question"] for line in sample if line.strip() and json.loads(line)["faq_question"]]
    await _answers(fb_sessions, in_scope, handoff=False)
    with serve(fb_settings) as fb:
        async with httpx.AsyncClient(base_url=fb.url, timeout=60) as c:
            assert (await c.post("/v1/drift/check", headers=agent)).status_code == 403
            quiet = (await c.post("/v1/drift/check", headers=admin)).json()
            assert quiet["questions"] == len(in_scope) and quiet["judged"]
            assert not quiet["drifted"] and quiet["event_id"] is None, quiet["crossed"]

            await _answers(fb_sessions, UNSEEN * 16, handoff=True, flag=3)  # 80 far questions beside 40 ordinary
            loud = (await c.post("/v1/drift/check", headers=admin)).json()
            assert loud["drifted"] and loud["event_id"], loud
            event = await consume(fb_settings.kafka_bootstrap, "quality.drift", {"event_id": loud["event_id"]})

            clusters = (await c.get("/v1/drift/clusters", headers=agent, params={"days": 1})).json()["clusters"]
            # The review page's "unanswered" view shows the same clusters above the questions (Chinese first).
            page = (await c.get("/ui/unanswered", headers={"X-API-Key": agent["Authorization"][7:]})).text
    assert event["engine_id"] == "eng-live" and event["dataset_id"] == dataset_id
    assert event["questions"] == len(in_scope) + 80 and event["crossed"] == loud["crossed"]
    assert any(line.startswith("retrieval confidence") for line in event["crossed"])
    # 3 of the 5 unseen topics fall below the far bar (明天北京天气 and 推荐一部好看的电影 share characters with
    # entries): 48 of 120 questions, against ~0.09 of the reference.
    assert event["figures"]["far_share"]["current"] >= 0.4 > 0.15 >= event["figures"]["far_share"]["reference"]
    assert event["figures"]["confidence"]["ks_p_value"] < 0.01
    assert [c["count"] for c in clusters] == [16] * 5
    assert {c["question"] for c in clusters} == set(UNSEEN)
    assert sum(c["flagged"] for c in clusters) == 3 and all(c["handed_off"] == 16 for c in clusters)
    assert event["clusters"][0]["count"] == 16
    assert 'id="clusters"' in page and "近 7 天转人工或被标记的相似问题" in page
    assert page.count('<li data-count="16">') == 5 and "16 次 · 转人工 16" in page
    async with fb_sessions() as session:  # the alert's durable record, committed with the outbox row
        ledger = await session.get(EventLedger, loud["event_id"])
    assert ledger is not None and ledger.topic == "quality.drift"
    # Every check is a drift_checks row, the alerting one committed with its outbox row.
    history = await drift_history.recent(fb_sessions)
    assert [(h["drifted"], h["event_id"]) for h in history] == [(True, loud["event_id"]), (False, None)]
    assert history[0]["confidence_ks"] == event["figures"]["confidence"]["ks_statistic"]
    assert history[0]["confidence_p"] < 0.01 and history[0]["thresholds"]["min_statistic"] == 0.2
    assert history[0]["window_end"] == loud["window_end"] and history[0]["clusters"][0]["count"] == 16
    assert history[1]["judged"] and history[1]["crossed"] == [] and history[1]["trigger"] == "api"
    assert [c["check_id"] for c in await drift_series(fb_sessions)] == [h["check_id"] for h in history[::-1]]
    # The scheduler counts the newest row as the last check: the next is a full interval away.
    scheduler = DriftScheduler(fb_sessions, None, fb_settings, lambda: None)  # type: ignore[arg-type]
    assert await scheduler._due_in() > fb_settings.feedback_drift_interval_seconds - 60

    # The same check from the CLI: exit 1 and a new event when it alerts (for cron and scripts).
    env = {
        "KEFU_HOME": str(fb_settings.home),
        "KEFU_DATABASE_URL": fb_settings.database_url,
        "KEFU_KAFKA_BOOTSTRAP": fb_settings.kafka_bootstrap,
    }
    result = await asyncio.to_thread(CliRunner().invoke, app, ["drift", "check", "--json"], env=env)
    assert result.exit_code == 1, result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    assert record["trigger"] == "cli" and record["drifted"]
    await consume(fb_settings.kafka_bootstrap, "quality.drift", {"event_id": record["event_id"]})
    listed = await asyncio.to_thread(CliRunner().invoke, app, ["drift", "history", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.strip().splitlines()]
    assert [r["trigger"] for r in rows] == ["cli", "api", "api"] and rows[0]["event_id"] == record["event_id"]
    table = await asyncio.to_thread(CliRunner().invoke, app, ["drift", "history", "--limit", "1"], env=env)
    assert table.exit_code == 0 and "cli" in table.output and "DRIFT" in table.output, table.output
    assert "confidence KS" in table.output and "top unanswered:" in table.output


async def test_no_live_engine_or_dataset_is_a_409(fb_settings: Settings, fb_sessions: async_sessionmaker) -> None:
    admin = {"Authorization": f"Bearer {await add_key(fb_sessions, 'admin')}"}
    with serve(fb_settings) as fb:
        async with httpx.AsyncClient(base_url=fb.url, timeout=60) as c:
            nothing_live = await c.post("/v1/drift/check", headers=admin)
            async with fb_sessions() as session, session.begin():
                session.add(
                    Deployment(
                        engine_id="eng-x",
                        model_id="m",
                        dataset_id="ds-gone",
                        triton_model="kefu-chat",
                        triton_version=1,
                        state="live",
                    )
                )
            no_dataset = await c.post("/v1/drift/check", headers=admin)
    assert nothing_live.status_code == 409 and nothing_live.json()["error"]["code"] == "no_live_deployment"
    assert no_dataset.status_code == 409 and no_dataset.json()["error"]["code"] == "dataset_missing"
