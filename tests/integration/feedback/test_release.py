"""Release bookkeeping against real databases: atomicity, races with reviews, cumulative corrections, lineage, CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from typer.testing import CliRunner

from kefu.cli import app as kefu_app
from libs.common.artifacts import ArtifactStore
from libs.common.db import make_engine, make_sessionmaker, upgrade_database
from libs.common.tables import Dataset, Deployment, Engine, Flag, Model, OutboxMessage
from services.feedback import release as release_module
from services.feedback.flags import flag_answer, review_flag
from services.feedback.lineage import collect_lineage, format_lineage
from services.feedback.release import release_corrections
from services.feedback.settings import Settings
from tests.integration.feedback.conftest import add_answer, seed_live_dataset

FIX = "进入「费用中心」-「发票管理」，勾选订单并填写抬头，电子发票1个工作日内发送到邮箱。"


async def approved_flag(sessions: async_sessionmaker, home: Path, parent: str, question: str, fix: str) -> str:
    answer_id = await add_answer(sessions, question, "请联系销售。", parent)
    store = ArtifactStore(home)
    view = await flag_answer(sessions, store, answer_id=answer_id, reason="wrong", agent="t", correction=fix)
    return (await review_flag(sessions, store, view.flag_id, action="approve", reviewer="admin")).flag_id


async def _rollback_on_failure(sessions: async_sessionmaker, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = await seed_live_dataset(sessions, home)
    flag_id = await approved_flag(sessions, home, parent, "如何开具发票？", FIX)
    real = release_module.store_dataset

    async def store_then_crash(*args: object, **kwargs: object) -> object:
        await real(*args, **kwargs)  # type: ignore[arg-type]
        raise RuntimeError("crash after the dataset row and its event were staged")

    monkeypatch.setattr(release_module, "store_dataset", store_then_crash)
    with pytest.raises(RuntimeError):
        await release_corrections(sessions, ArtifactStore(home))
    async with sessions() as session:
        assert (await session.get(Flag, flag_id)).status == "approved"
        assert await session.scalar(select(func.count()).select_from(Dataset)) == 1  # only the parent
        topics = (await session.scalars(select(OutboxMessage.topic))).all()
    assert topics.count("dataset.ready") == 1  # the parent's; the crashed release staged nothing that survived
    monkeypatch.setattr(release_module, "store_dataset", real)
    result = await release_corrections(sessions, ArtifactStore(home))
    assert result is not None and result.flag_ids == [flag_id]
    async with sessions() as session:
        flag = await session.get(Flag, flag_id)
        assert (flag.status, flag.released_dataset_id) == ("released", result.dataset_id)
        assert await session.get(Dataset, result.dataset_id) is not None


async def test_release_is_atomic_on_postgres(
    fb_sessions: async_sessionmaker, fb_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _rollback_on_failure(fb_sessions, fb_settings.home, monkeypatch)


async def test_release_is_atomic_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The single-machine default: the savepoint must nest in the open transaction there too.
    url = f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}"
    await asyncio.to_thread(upgrade_database, url)
    engine = make_engine(url)
    try:
        await _rollback_on_failure(make_sessionmaker(engine), tmp_path / "home", monkeypatch)
    finally:
        await engine.dispose()


async def test_a_review_during_the_build_cancels_that_release(
    fb_sessions: async_sessionmaker, fb_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = await seed_live_dataset(fb_sessions, fb_settings.home)
    flag_id = await approved_flag(fb_sessions, fb_settings.home, parent, "如何开具发票？", FIX)
    loop = asyncio.get_running_loop()
    real = release_module.build_release

    def build_while_reviewed(*args: object) -> object:
        result = real(*args)  # type: ignore[arg-type]
        edit = review_flag(
            fb_sessions,
            ArtifactStore(fb_settings.home),
            flag_id,
            action="edit",
            reviewer="admin",
            correction="另一个答案。",
        )
        asyncio.run_coroutine_threadsafe(edit, loop).result(timeout=30)
        return result

    monkeypatch.setattr(release_module, "build_release", build_while_reviewed)
    assert await release_corrections(fb_sessions, ArtifactStore(fb_settings.home)) is None
    monkeypatch.setattr(release_module, "build_release", real)
    result = await release_corrections(fb_sessions, ArtifactStore(fb_settings.home))
    assert result is not None
    stored = ArtifactStore(fb_settings.home).path("datasets", result.dataset_id)
    assert "另一个答案。" in (stored / "regression.jsonl").read_text()


async def test_releases_are_cumulative_and_lineage_shows_them(
    fb_sessions: async_sessionmaker, fb_settings: Settings
) -> None:
    store = ArtifactStore(fb_settings.home)
    parent = await seed_live_dataset(fb_sessions, fb_settings.home)
    assert await release_corrections(fb_sessions, store) is None  # nothing approved
    first_flag = await approved_flag(fb_sessions, fb_settings.home, parent, "如何开具发票？", FIX)
    assert await release_corrections(fb_sessions, store, min_approved=2) is None  # below the threshold
    first = await release_corrections(fb_sessions, store)
    # The first release is still training: the live deployment serves the parent, so the next release builds on
    # the parent again and must carry the first correction too.
    second_flag = await approved_flag(
        fb_sessions, fb_settings.home, parent, "人工客服几点上班？", "人工客服 7×24 小时在线。"
    )
    second = await release_corrections(fb_sessions, store)
    assert first is not None and second is not None and second.parent_dataset_id == parent
    assert second.flag_ids == [second_flag]
    rows = [json.loads(x) for x in (store.path("datasets", second.dataset_id) / "train.jsonl").read_text().splitlines()]
    answers = {r["instruction"]: r["output"] for r in rows}
    assert answers["如何开具发票？"] == FIX and answers["人工客服几点上班？"] == "人工客服 7×24 小时在线。"
    assert second.counts["regression"] == 2

    async with fb_sessions() as session, session.begin():
        session.add(
            Model(
                model_id="mdl-2",
                dataset_id=second.dataset_id,
                run_id="run-2",
                uri="file:///m",
                base_model="tiny",
                metrics={"eval_exact_match": 0.75},
                chat_template_sha256="0" * 64,
            )
        )
        session.add(
            Engine(
                engine_id="eng-2",
                model_id="mdl-2",
                dataset_id=second.dataset_id,
                triton_model="kefu-chat",
                triton_version=2,
                precision="int8",
                quality={},
                passed_gate=True,
                uri="file:///e",
            )
        )
        session.add(
            Deployment(
                engine_id="eng-2",
                model_id="mdl-2",
                dataset_id=second.dataset_id,
                triton_model="kefu-chat",
                triton_version=2,
                state="canary",
                traffic_percent=10.0,
            )
        )
    doc = await collect_lineage(fb_sessions, "eng-2")
    assert doc["kind"] == "engine" and doc["dataset_id"] == second.dataset_id
    assert [a["dataset_id"] for a in doc["ancestors"]] == [parent]
    assert [f["flag_id"] for f in doc["flags"]] == [second_flag]
    text = "\n".join(format_lineage(doc))
    for expected in (
        "run run-2 → model mdl-2",
        "engine eng-2 (int8, kefu-chat v2, gate passed)",
        "canary 10%",
        f"parent {parent}",
        second_flag,
        "人工客服几点上班？",
    ):
        assert expected in text
    first_doc = await collect_lineage(fb_sessions, first_flag)
    assert first_doc["kind"] == "flag" and first_doc["dataset_id"] == first.dataset_id


def test_cli_release_and_lineage(fb_settings: Settings, fb_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "KEFU_HOME": str(fb_settings.home),
        "KEFU_DATABASE_URL": fb_db,
        "KEFU_KAFKA_BOOTSTRAP": fb_settings.kafka_bootstrap,
        "KEFU_MIGRATE_ON_START": "false",
    }.items():
        monkeypatch.setenv(key, value)

    async def seed() -> str:
        engine = make_engine(fb_db)
        try:
            sessions = make_sessionmaker(engine)
            parent = await seed_live_dataset(sessions, fb_settings.home)
            await approved_flag(sessions, fb_settings.home, parent, "如何开具发票？", FIX)
            return parent
        finally:
            await engine.dispose()

    runner = CliRunner()
    empty = runner.invoke(kefu_app, ["feedback", "release"])
    assert empty.exit_code == 0 and empty.stdout == ""
    parent = asyncio.run(seed())
    released = runner.invoke(kefu_app, ["feedback", "release"])
    assert released.exit_code == 0, released.output
    dataset_id = released.stdout.strip().splitlines()[-1]
    assert dataset_id.startswith("ds-") and "dataset.ready published" in released.stdout
    lineage = runner.invoke(kefu_app, ["lineage", dataset_id])
    assert lineage.exit_code == 0, lineage.output
    assert f"dataset {dataset_id}" in lineage.stdout and f"parent {parent}" in lineage.stdout
    assert "flags behind" in lineage.stdout and "no model trained on it yet" in lineage.stdout
    as_json = json.loads(runner.invoke(kefu_app, ["lineage", dataset_id, "--json"]).stdout)
    assert as_json["dataset_id"] == dataset_id and len(as_json["flags"]) == 1
    unknown = runner.invoke(kefu_app, ["lineage", "nope"])
    assert unknown.exit_code == 2 and "no dataset, model, engine, flag or answer" in unknown.stderr

    async def approve_another() -> None:
        engine = make_engine(fb_db)
        try:
            await approved_flag(
                make_sessionmaker(engine), fb_settings.home, parent, "人工客服几点上班？", "7×24 小时在线。"
            )
        finally:
            await engine.dispose()

    asyncio.run(approve_another())
    missing = runner.invoke(kefu_app, ["feedback", "release", "--dataset", "ds-nope"])
    assert missing.exit_code == 2 and "dataset ds-nope is not in the artifact store" in missing.stderr
