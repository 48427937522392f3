"""Evidence-based rollout on the real stack (Triton, Tansu, the gateway): two tiny models trained for real on the
same 8-row FAQ, one on its answers and one on the answers shuffled between questions and trained without
references, so it answers from memory (an engine that follows its references answers right from the right
knowledge base, whatever it memorised: trained grounded on the shuffled rows, it reached char-F1 0.77 against
live's 1.0). The shuffled one answers fast and without errors but with wrong facts; served as a canary over the
right knowledge base, with no customer traffic at all, the shadow replay shows it worse and it is rolled back. A
good canary, also without traffic, is promoted on the replay's evidence."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tritonclient.grpc.aio as aioclient
from openai import AsyncOpenAI

from libs.common.db import make_engine, make_sessionmaker, upgrade_database
from libs.common.events import Topic
from libs.common.knowledge import KNOWLEDGE_FILE, entries_from_rows, to_jsonl
from libs.common.scoring import char_f1
from libs.common.tables import Engine
from services.builder.build import build
from services.builder.repository import config_pbtxt
from services.trainer.base_model import resolve_base_model
from services.trainer.config import TrainConfig
from services.trainer.sft import train_model
from tests.integration.conftest import FAQ, Built, Triton

from .conftest import RunningGateway, announce, engine_event, gateway_settings, run_gateway, wait_for_state
from .test_rollout import events

pytestmark = pytest.mark.slow
GOOD, BAD, GOOD_AGAIN = "kefu-ev-good", "kefu-ev-bad", "kefu-ev-good2"
DATASET, SHUFFLED = "ds-evidence", "ds-evidence-shuffled"
# Small but real: every row seen ~100 times (train EM ~0.9 on 8 rows, ~70 optimizer steps).
CONFIG = TrainConfig(
    min_examples=800, evaluations=1, early_stopping_patience=None, paraphrase_probes=8, hotfix_probes=0,
    gate_min={"train_exact_match": 0.75},
)  # fmt: skip


def write_dataset(root: Path, rows: list[tuple[str, str]]) -> Path:
    """A dataset version as ingest lays it out: every row trained, three also held out, the knowledge base."""
    root.mkdir(parents=True)
    lines = [json.dumps({"instruction": q, "input": "", "output": a}, ensure_ascii=False) + "\n" for q, a in rows]
    (root / "train.jsonl").write_text("".join(lines), encoding="utf-8")
    (root / "eval.jsonl").write_text("".join(lines[:3]), encoding="utf-8")
    (root / KNOWLEDGE_FILE).write_bytes(to_jsonl(entries_from_rows(rows)))
    return root


@dataclass(frozen=True)
class Engines:
    home: Path
    version_dirs: dict[str, Path]  # Triton model -> its version 1


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory, built: Built) -> Engines:
    home = tmp_path_factory.mktemp("evidence-home")
    answers = [a for _, a in FAQ]
    shuffled = [(q, a) for (q, _), a in zip(FAQ, answers[1:] + answers[:1], strict=True)]
    good_ds = write_dataset(home / "datasets" / DATASET, FAQ)
    bad_ds = write_dataset(home / "datasets" / SHUFFLED, shuffled)
    base = resolve_base_model(None, home / "base-models")
    version_dirs = {}
    from_memory = CONFIG.with_overrides(grounded=False)
    for name, dataset, config in ((GOOD, good_ds, CONFIG), (BAD, bad_ds, from_memory)):
        trained = train_model(dataset, home / "models" / name, config, base=base, tracking_uri=None, artifact_root=None)
        assert not trained.missed, trained.metrics  # each learned its own answers (the trainer's gate)
        # Each passes the builder's gate against its OWN dataset: the shuffled one is wrong, not broken.
        result = build(trained.model_dir, built.repo, precision="fp32", dataset_dir=dataset, model_name=name)
        version_dirs[name] = result.version_dir
    again = built.repo / GOOD_AGAIN
    again.mkdir()
    (again / "config.pbtxt").write_text(config_pbtxt(GOOD_AGAIN), encoding="utf-8")
    version_dirs[GOOD_AGAIN] = Path(shutil.copytree(version_dirs[GOOD], again / "1"))
    return Engines(home, version_dirs)


@pytest.fixture(scope="module")
async def evidence_gateway(
    engines: Engines, tansu: str, triton: Triton, triton_client: aioclient.InferenceServerClient
) -> AsyncIterator[RunningGateway]:
    for name in engines.version_dirs:
        await triton_client.load_model(name)
    home = engines.home
    settings = gateway_settings(
        home, f"sqlite+aiosqlite:///{home}/kefu.db", tansu, triton.grpc_url,
        canary_percent=1.0, canary_seconds=1.0, canary_min_answers=6, canary_requests=1000,
        # One replayed question at a time: each engine then answers alone, so the copy of the live weights answers
        # byte for byte as live does (batched with others, other left padding may tip a near-tie of the tiny model).
        canary_shadow_concurrency=1,
    )  # fmt: skip
    await asyncio.to_thread(upgrade_database, settings.effective_database_url)
    engine = make_engine(settings.effective_database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        for name, version_dir in engines.version_dirs.items():
            # The shuffled model is served over the right knowledge base: a model that learned the wrong facts.
            session.add(
                Engine(
                    engine_id=f"e-{name}", model_id=f"model-e-{name}", dataset_id=DATASET, triton_model=name,
                    triton_version=1, precision="fp32", quality={}, passed_gate=True, uri=version_dir.as_uri(),
                )
            )  # fmt: skip
    await engine.dispose()
    try:
        async with run_gateway(settings) as gw:
            yield gw
    finally:
        for name in engines.version_dirs:
            await triton_client.unload_model(name)


def deploy(name: str):
    return engine_event(f"e-{name}", name, 1).model_copy(update={"dataset_id": DATASET})


async def test_wrong_facts_are_rolled_back_and_a_good_canary_is_promoted_on_replayed_evidence(
    evidence_gateway: RunningGateway,
) -> None:
    gw = evidence_gateway
    await announce(gw.settings, deploy(GOOD))
    await wait_for_state(gw.settings, f"e-{GOOD}", "live")
    await asyncio.sleep(gw.settings.rollout_poll_seconds * 3)  # the routing table follows
    right = []
    async with AsyncOpenAI(base_url=gw.http, api_key=gw.keys["app"], max_retries=0) as client:
        for question, answer in FAQ:  # customers' questions: the replay picks them up from the answer log
            completion = await client.chat.completions.create(
                model=GOOD, messages=[{"role": "user", "content": question}]
            )
            right.append(char_f1(completion.choices[0].message.content or "", answer))
    assert sum(right) / len(right) > 0.8, right  # the live engine is good

    await announce(gw.settings, deploy(BAD))
    bad = await wait_for_state(gw.settings, f"e-{BAD}", "rolled_back", timeout=120)
    assert bad.requests == 0  # no customer ever reached it: the replay was the evidence
    assert bad.evidence["canary"]["char_f1"] < bad.evidence["live"]["char_f1"] - 0.3, bad.evidence
    assert bad.evidence["canary"]["errors"] == 0  # fast and error-free, only wrong
    assert "answers worse than live" in bad.reason
    (rolled,) = await events(gw.settings.kafka_bootstrap, Topic.DEPLOYMENT_ROLLED_BACK, f"e-{BAD}")
    assert rolled["reason"].startswith("shadow replay") and rolled["restored_engine_id"] == f"e-{GOOD}"

    await announce(gw.settings, deploy(GOOD_AGAIN))
    promoted = await wait_for_state(gw.settings, f"e-{GOOD_AGAIN}", "live", timeout=120)
    assert promoted.requests == 0 and promoted.evidence["n"] >= gw.settings.canary_min_answers
    assert promoted.evidence["probes"]["recent"] >= 5 and promoted.evidence["probes"]["eval"] == 3
    assert promoted.evidence["canary"]["char_f1"] == promoted.evidence["live"]["char_f1"]  # same weights
    assert "replayed" in promoted.reason
