"""The gateway's knowledge per engine: its dataset's base, its k and threshold, and every approved update."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from libs.common.artifacts import ENGINE_META, ArtifactStore
from libs.common.db import make_engine, make_sessionmaker, upgrade_database
from libs.common.knowledge import KNOWLEDGE_FILE, entries_from_rows, entry_id_for, to_jsonl
from libs.common.retrieval import PARAMS
from libs.common.tables import Engine, KnowledgeUpdate, utcnow
from services.gateway.knowledge import Knowledge, index_changes
from services.gateway.routing import Target

FAQ = [("如何申请退款？", "在订单页申请退款。"), ("忘记密码怎么办？", "在登录页点击忘记密码。")]


def test_each_engine_answers_from_its_dataset_and_every_update_reaches_all(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/kefu.db"
    upgrade_database(url)
    store = ArtifactStore(tmp_path)
    for dataset, rows in (("ds-a", FAQ), ("ds-b", FAQ[:1])):
        store.path("datasets", dataset).mkdir(parents=True)
        (store.path("datasets", dataset) / KNOWLEDGE_FILE).write_bytes(to_jsonl(entries_from_rows(rows)))

    async def run() -> None:
        db = make_engine(url)
        sessions = make_sessionmaker(db)
        async with sessions() as session, session.begin():
            for engine_id, dataset, retrieval in (
                ("e-a", "ds-a", {"k": 2, "handoff_threshold": 0.3, "answer_check": {"min_support": 0.5}}),
                # Trained with an older synonym table: served all the same, with a warning to retrain it.
                ("e-b", "ds-b", {"k": 1, "handoff_threshold": 0.5, "index": {**PARAMS, "synonyms": 46}}),
                ("e-old", "ds-a", None),  # trained before grounding: served as it was trained
            ):
                version = tmp_path / "repo" / engine_id
                version.mkdir(parents=True)
                (version / ENGINE_META).write_text(json.dumps({"retrieval": retrieval}), "utf-8")
                session.add(
                    Engine(engine_id=engine_id, model_id="m", dataset_id=dataset, triton_model="kefu-chat",
                           triton_version=1, precision="fp32", quality={}, passed_gate=True, uri=version.as_uri())
                )  # fmt: skip
        knowledge = Knowledge(sessions, store, follow_bar=0.8)
        target = {e: Target(e, "m", d, "kefu-chat", 1, "live") for e, d in (("e-a", "ds-a"), ("e-b", "ds-b"))}
        a = await knowledge.for_target(target["e-a"])
        assert (a.k, a.threshold, len(a.retriever), a.min_support) == (2, 0.3, 2, 0.5)
        assert "other retrieval settings" not in caplog.text
        assert (await knowledge.for_target(Target("e-old", "m", "ds-a", "kefu-chat", 1, "live"))).search("退款") is None

        question = "发票怎么开？"
        async with sessions() as session, session.begin():
            session.add(KnowledgeUpdate(entry_id=entry_id_for(question), action="add", question=question,
                                        answer="在费用中心申请。", created_at=utcnow()))  # fmt: skip
        # A new engine is served first: the update it loads must reach the engine already served as well.
        with caplog.at_level(logging.WARNING, logger="kefu.gateway.knowledge"):
            b = await knowledge.for_target(target["e-b"])
        assert (b.k, b.threshold, len(b.retriever), b.min_support) == (1, 0.5, 2, 0.0)  # no calibrated bar: off
        warned = f"engine e-b was trained with other retrieval settings (synonyms 46 → {PARAMS['synonyms']})"
        assert warned in caplog.text
        for grounding in (b, await knowledge.for_target(target["e-a"])):
            assert grounding.search("请问发票怎么开呢").hits[0].entry.entry_id == entry_id_for(question)
        assert await knowledge.refresh() == 0  # nothing newer
        await db.dispose()

    asyncio.run(run())


def test_a_damaged_knowledge_base_hands_off_instead_of_failing(tmp_path: Path) -> None:
    url, store = one_engine(tmp_path, "ds-bad", {"k": 1, "handoff_threshold": 0.3}, b'{"entry_id": "kb-1"}\n')
    grounding = asyncio.run(grounding_of(url, store, "ds-bad"))
    found = grounding.search("如何申请退款？")
    assert found is not None and found.hits == [] and found.confidence < grounding.threshold


def test_an_engine_that_does_not_follow_its_references_serves_approved_corrections_as_is(tmp_path: Path) -> None:
    """The tiny base answers an edited reference with another entry's text (measured: 0 of 20 corrections followed,
    every answer wrong), so an engine below the follow bar serves the approved text of what changed since its
    dataset — and only that: untouched entries, hand-offs and engines that follow are answered by the model."""
    url = f"sqlite+aiosqlite:///{tmp_path}/kefu.db"
    upgrade_database(url)
    store = ArtifactStore(tmp_path)
    store.path("datasets", "ds-a").mkdir(parents=True)
    (store.path("datasets", "ds-a") / KNOWLEDGE_FILE).write_bytes(to_jsonl(entries_from_rows(FAQ)))
    corrected, added = "在订单页点击「申请退款」，5个工作日内到账。", "在费用中心申请。"

    async def run() -> None:
        db = make_engine(url)
        sessions = make_sessionmaker(db)
        async with sessions() as session, session.begin():
            for engine_id, rate in (("e-tiny", 0.0), ("e-reader", 0.95), ("e-unmeasured", None)):
                version = tmp_path / "repo" / engine_id
                version.mkdir(parents=True)
                retrieval = {"k": 1, "handoff_threshold": 0.3, "hotfix_follow_rate": rate}
                (version / ENGINE_META).write_text(json.dumps({"retrieval": retrieval}), "utf-8")
                session.add(
                    Engine(engine_id=engine_id, model_id="m", dataset_id="ds-a", triton_model="kefu-chat",
                           triton_version=1, precision="fp32", quality={}, passed_gate=True, uri=version.as_uri())
                )  # fmt: skip
        knowledge = Knowledge(sessions, store, follow_bar=0.8)
        target = {e: Target(e, "m", "ds-a", "kefu-chat", 1, "live") for e in ("e-tiny", "e-reader", "e-unmeasured")}
        assert (await knowledge.for_target(target["e-tiny"])).ground("如何申请退款？").verbatim is None  # no updates

        async with sessions() as session, session.begin():
            refund = entries_from_rows(FAQ)[0]
            session.add(KnowledgeUpdate(entry_id=refund.entry_id, action="replace", question=refund.question,
                                        answer=corrected, created_at=utcnow()))  # fmt: skip
            session.add(KnowledgeUpdate(entry_id=entry_id_for("发票怎么开？"), action="add", question="发票怎么开？",
                                        answer=added, created_at=utcnow()))  # fmt: skip
        assert await knowledge.refresh() == 2
        for engine_id in ("e-tiny", "e-unmeasured"):  # not shown to follow: the approved texts, as is
            grounding = await knowledge.for_target(target[engine_id])
            assert grounding.ground("退款怎么申请").verbatim == corrected
            assert grounding.ground("请问发票怎么开呢").verbatim == added
            assert grounding.ground("忘记密码怎么办？").verbatim is None  # untouched: the model answers
            out_of_scope = grounding.ground("今天天气怎么样")
            assert out_of_scope.handoff and out_of_scope.verbatim is None
        reader = await knowledge.for_target(target["e-reader"])
        refund_answer = reader.ground("退款怎么申请")
        assert refund_answer.verbatim is None and corrected in refund_answer.context  # it generates over the fix
        await db.dispose()

    asyncio.run(run())


def test_index_changes_name_what_differs_from_this_version() -> None:
    assert index_changes(None) == "" and index_changes({"k": 1}) == ""  # nothing recorded: nothing to compare
    assert index_changes({"index": dict(PARAMS)}) == ""
    assert index_changes({"index": {**PARAMS, "k1": 1.5, "synonyms": 46}}) == (
        f"synonyms 46 → {PARAMS['synonyms']}, k1 1.5 → {PARAMS['k1']}"
    )
    # An engine recorded before a setting existed (the information-weighted confidence): its threshold was
    # calibrated on the old measure, so the missing setting counts as a difference.
    before = {key: value for key, value in PARAMS.items() if key != "confidence"}
    assert index_changes({"index": before}) == f"confidence — → {PARAMS['confidence']}"


def one_engine(tmp_path: Path, dataset: str, retrieval: dict | None, knowledge: bytes) -> tuple[str, ArtifactStore]:
    """A migrated database holding one engine ("e-1") whose manifest records ``retrieval``, over ``dataset``."""
    url = f"sqlite+aiosqlite:///{tmp_path}/kefu.db"
    upgrade_database(url)
    store = ArtifactStore(tmp_path)
    store.path("datasets", dataset).mkdir(parents=True)
    (store.path("datasets", dataset) / KNOWLEDGE_FILE).write_bytes(knowledge)
    version = tmp_path / "repo" / "e-1"
    version.mkdir(parents=True)
    (version / ENGINE_META).write_text(json.dumps({"retrieval": retrieval}), "utf-8")

    async def add() -> None:
        db = make_engine(url)
        async with make_sessionmaker(db)() as session, session.begin():
            session.add(
                Engine(engine_id="e-1", model_id="m", dataset_id=dataset, triton_model="kefu-chat",
                       triton_version=1, precision="fp32", quality={}, passed_gate=True, uri=version.as_uri())
            )  # fmt: skip
        await db.dispose()

    asyncio.run(add())
    return url, store


async def grounding_of(url: str, store: ArtifactStore, dataset: str, **options: bool):  # type: ignore[no-untyped-def]
    db = make_engine(url)
    try:
        knowledge = Knowledge(make_sessionmaker(db), store, follow_bar=0.8, **options)
        return await knowledge.for_target(Target("e-1", "m", dataset, "kefu-chat", 1, "live"))
    finally:
        await db.dispose()


def test_a_gateway_with_the_answer_check_off_holds_no_engine_to_its_bar(tmp_path: Path) -> None:
    retrieval = {"k": 1, "handoff_threshold": 0.3, "answer_check": {"min_support": 0.5, "opening_bigrams": 6}}
    url, store = one_engine(tmp_path, "ds-a", retrieval, to_jsonl(entries_from_rows(FAQ)))
    checked = asyncio.run(grounding_of(url, store, "ds-a"))
    unchecked = asyncio.run(grounding_of(url, store, "ds-a", answer_check=False))
    assert (checked.min_support, unchecked.min_support) == (0.5, 0.0)
    assert checked.opening_bigrams == 6  # judged on the opening the bar was calibrated on


@pytest.mark.parametrize(
    "check", [{"min_support": "high"}, {"min_support": 0.5, "opening_bigrams": -2}, ["min_support", 0.5]]
)
def test_an_unreadable_answer_check_serves_the_engine_unchecked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, check: object
) -> None:
    retrieval = {"k": 1, "handoff_threshold": 0.3, "answer_check": check}
    url, store = one_engine(tmp_path, "ds-a", retrieval, to_jsonl(entries_from_rows(FAQ)))
    with caplog.at_level(logging.ERROR, logger="kefu.gateway.knowledge"):
        grounding = asyncio.run(grounding_of(url, store, "ds-a"))
    assert (grounding.min_support, grounding.threshold) == (0.0, 0.3)  # answered, retrieval as recorded
    assert "engine e-1: unreadable answer_check" in caplog.text
