"""Serving telemetry into training, the feedback half on real PostgreSQL: a release snapshots the answer log's
length percentiles and unanswered clusters into the new dataset version, and the trainer's reader takes from it
exactly the clusters that are still out of scope (the training half: tests/integration/trainer)."""

from __future__ import annotations

import json
import uuid

from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.artifacts import ArtifactStore
from libs.common.knowledge import load_knowledge
from libs.common.tables import Answer
from services.feedback.flags import flag_answer, review_flag
from services.feedback.release import release_corrections
from services.feedback.settings import Settings
from services.trainer import serving_profile as trainer_profile
from tests.integration.feedback.conftest import seed_live_dataset

MARS = "火星旅游签证怎么办理，回电 13812345678"  # a phone number the profile must not carry
INVOICE = "能开增值税专用发票吗"


async def _log(sessions: async_sessionmaker, question: str, n: int, **fields: object) -> list[str]:
    ids = [f"ans-{uuid.uuid4().hex[:12]}" for _ in range(n)]
    async with sessions() as session, session.begin():
        for i, answer_id in enumerate(ids):
            row = {"answer": "", "engine_id": "eng-live", "model_id": "mdl-live", "status": "ok", **fields}
            if "prompt_tokens" in fields:
                row["prompt_tokens"] = int(fields["prompt_tokens"]) + i  # type: ignore[call-overload]
            session.add(Answer(answer_id=answer_id, question=question, **row))
    return ids


async def test_a_release_carries_the_serving_profile_the_trainer_reads(
    fb_sessions: async_sessionmaker, fb_settings: Settings
) -> None:
    store = ArtifactStore(fb_settings.home)
    await seed_live_dataset(fb_sessions, fb_settings.home)
    await _log(fb_sessions, "怎么重置密码", 40, prompt_tokens=100, completion_tokens=20)  # answered: 100..139 + 20
    await _log(fb_sessions, MARS, 12, handoff=True)
    invoice = await _log(fb_sessions, INVOICE, 6, handoff=True)
    await _log(fb_sessions, "服务器突然连不上了怎么回事", 1, status="error")
    view = await flag_answer(
        fb_sessions, store, answer_id=invoice[0], reason="转人工", agent="t", correction="可以，在费用中心申请专票。"
    )
    await review_flag(fb_sessions, store, view.flag_id, action="approve", reviewer="admin")

    result = await release_corrections(fb_sessions, store)
    assert result is not None
    stored = store.path("datasets", result.dataset_id)
    profile = json.loads((stored / "serving_profile.json").read_text(encoding="utf-8"))

    assert profile["answers"] == 59 and abs(profile["handoff_rate"] - 18 / 59) < 1e-9
    assert profile["question_chars"]["p99"] == len(MARS) and profile["question_chars"]["p50"] == len("怎么重置密码")
    # Only answers the model generated count tokens: 40 rows of 120..159, nearest-rank p99 = the 40th.
    assert profile["sequence_tokens"] == {"count": 40, "max": 159, "p50": 139, "p90": 155, "p95": 157, "p99": 159}
    assert profile["token_models"] == ["mdl-live"]
    clusters = {c["question"]: c for c in profile["unanswered_clusters"]}
    assert "火星旅游签证怎么办理，回电 [PHONE]" in clusters and "13812345678" not in json.dumps(profile)
    assert clusters[INVOICE]["flagged"] == 1 and clusters[INVOICE]["handed_off"] == 6
    assert not any("answer_ids" in c for c in profile["unanswered_clusters"])

    # The trainer's side of the contract: the Mars cluster is a probe; the invoice one is an FAQ entry now.
    read = trainer_profile.read(stored)
    probes, record = trainer_profile.handoff_probes(read, load_knowledge(stored))
    assert probes == ["火星旅游签证怎么办理，回电 [PHONE]"]
    assert [s["reason"] for s in record["skipped"]] == ["now an FAQ entry of this version"]
