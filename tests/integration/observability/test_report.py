"""``kefu report`` on a small real home (a migrated SQLite database with answers, flags, models and deployments;
an MLflow SQLite store with runs logged through MLflow), opened in headless Chromium: every section and plot
renders."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from kefu.cli import app
from libs.common.db import make_engine, make_sessionmaker, upgrade_database
from libs.common.tables import Answer, Deployment, DriftCheck, Flag, Model, utcnow
from services.trainer.settings import Settings as TrainerSettings
from tests.integration.feedback.chromium import By, browser_fixture, waiting  # noqa: F401 (the fixture)

EVIDENCE = {
    "n": 24,
    "probes": {"regression": 2, "eval": 12, "recent": 10},
    "canary": {"char_f1": 0.61, "handoff_rate": 0.2, "corrections_honoured": 0.5, "errors": 0},
    "live": {"char_f1": 0.74, "handoff_rate": 0.1, "corrections_honoured": 1.0, "errors": 0},
    "differing": [],
}


async def _seed(url: str) -> None:
    engine = make_engine(url)
    now = utcnow()
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            for i, (model, metrics) in enumerate(
                [
                    (
                        "mdl-a",
                        {"train_exact_match": 0.92, "paraphrase_exact_match": 0.61, "handoff_rate_in_scope": 0.1},
                    ),
                    (
                        "mdl-b",
                        {"train_exact_match": 0.95, "paraphrase_exact_match": 0.7, "handoff_rate_in_scope": 0.05},
                    ),
                ]
            ):
                session.add(
                    Model(
                        model_id=model,
                        dataset_id="ds-1",
                        run_id=None,
                        uri="file:///x",
                        base_model="tiny",
                        metrics=metrics,
                        chat_template_sha256="0" * 64,
                        created_at=now - timedelta(days=3 - i),
                    )
                )
            n = 0
            for day in range(3):
                for engine_id, handoff_every in (("eng-a", 4), ("eng-b", 2)):
                    for k in range(8):
                        n += 1
                        answer_id = f"ans-{n}"
                        session.add(
                            Answer(
                                answer_id=answer_id,
                                question=f"问题 {n}",
                                answer="回答",
                                engine_id=engine_id,
                                handoff=k % handoff_every == 0,
                                # eng-b's hand-offs (k = 0, 2, 4, 6): a figure the entry lacks, the answer check,
                                # low coverage twice
                                unspoken_kinds=["price"] if engine_id == "eng-b" and k == 0 else None,
                                ungrounded=engine_id == "eng-b" and k == 2,
                                created_at=now - timedelta(days=day, hours=1),
                            )
                        )
                        if k == 1:
                            session.add(Flag(flag_id=f"flg-{n}", answer_id=answer_id, reason="wrong", agent="小王"))
            for engine_id, state, reason, evidence in (
                ("eng-a", "live", None, None),
                ("eng-b", "rolled_back", "char_f1 0.61 < live 0.74 - 0.03", EVIDENCE),
            ):
                session.add(
                    Deployment(
                        engine_id=engine_id,
                        model_id="mdl-a",
                        dataset_id="ds-1",
                        triton_model="kefu-chat",
                        triton_version=1,
                        state=state,
                        reason=reason,
                        evidence=evidence,
                    )
                )
            for day, (stat, p, crossed) in enumerate(
                [(0.5, 1e-11, ["retrieval confidence: KS 0.500 ≥ 0.2 with p 1e-11 < 0.01"]), (0.08, 0.4, [])]
            ):
                session.add(
                    DriftCheck(
                        check_id=f"chk-{day}",
                        checked_at=now - timedelta(days=day, hours=2),
                        trigger="schedule",
                        engine_id="eng-a",
                        dataset_id="ds-1",
                        window_start=now - timedelta(days=day + 1, hours=2),
                        window_end=now - timedelta(days=day, hours=2),
                        questions=120,
                        reference_questions=79,
                        figures={
                            "confidence": {"ks_statistic": stat, "ks_p_value": p},
                            "length": {"ks_statistic": 0.1, "ks_p_value": 0.3},
                            "far_share": {"current": 0.68 if crossed else 0.2, "reference": 0.19},
                        },
                        thresholds={"min_statistic": 0.2, "max_p_value": 0.01},
                        crossed=crossed,
                        judged=True,
                        drifted=bool(crossed),
                        clusters=[{"question": "火星旅游签证怎么办理", "count": 16, "handed_off": 16, "flagged": 0}],
                        event_id="evt-1" if crossed else None,
                    )
                )
    finally:
        await engine.dispose()


def _log_runs(settings: TrainerSettings) -> None:
    client = MlflowClient(settings.tracking_uri())
    experiment = client.create_experiment("kefu-test", artifact_location=(settings.home / "mlruns").as_uri())
    for name, scale in (("run-one", 3.0), ("run-two", 2.0)):
        run = client.create_run(experiment, run_name=name)
        for step in range(1, 21):
            client.log_metric(run.info.run_id, "loss", scale / step, step=step)
        client.log_metric(run.info.run_id, "paraphrase_exact_match", 0.7)
        client.set_terminated(run.info.run_id)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    settings = TrainerSettings(home=tmp_path / "home")
    settings.home.mkdir(parents=True)
    upgrade_database(settings.effective_database_url)
    asyncio.run(_seed(settings.effective_database_url))
    _log_runs(settings)
    return settings.home


def test_report_renders_every_section_in_chromium(home: Path, tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "report" / "report.html"
    result = CliRunner().invoke(app, ["report", "--out", str(out)], env={"KEFU_HOME": str(home)})
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch

    browser.get(out.as_uri())
    waiting(browser).until(lambda d: d.execute_script("return document.readyState") == "complete")
    sections = [s.get_attribute("id") for s in browser.find_elements(By.CSS_SELECTOR, "section")]
    assert sections == ["loss", "eval", "rates", "canary", "drift"]
    sizes = browser.execute_script(
        "return [...document.images].map(i => [i.closest('section').id, i.complete, i.naturalWidth, i.naturalHeight,"
        " i.getBoundingClientRect().width])"
    )
    assert [s[0] for s in sizes] == ["loss", "eval", "rates", "drift"]
    assert all(done and w > 100 and h > 100 and shown > 100 for _, done, w, h, shown in sizes), sizes
    assert not browser.find_elements(By.CSS_SELECTOR, ".empty")

    loss = browser.find_element(By.ID, "loss").text
    assert "run-one" in loss and "run-two" in loss and "0.1000" in loss  # final loss of run-two: 2 / 20
    evaluation = browser.find_element(By.ID, "eval").text
    assert "mdl-a" in evaluation and "0.610" in evaluation and "0.950" in evaluation
    rates = browser.find_element(By.ID, "rates").text
    assert "eng-a" in rates and "25.0%" in rates and "50.0%" in rates and "12.5%" in rates
    rows = {r.text.split()[0]: r.text for r in browser.find_elements(By.CSS_SELECTOR, "#rates tr")[1:]}
    assert rows["eng-b"].endswith("6 / 3 / 3") and rows["eng-a"].endswith("6 / 0 / 0")  # why, over 3 days
    canary = browser.find_element(By.ID, "canary").text
    assert "rolled_back" in canary and "char_f1 0.61 < live 0.74" in canary and "0.610 / 0.740" in canary
    drift = browser.find_element(By.ID, "drift").text
    assert "retrieval confidence: KS 0.500" in drift and "0.500 (1e-11)" in drift and "68.0%" in drift
    assert "ok" in drift and "火星旅游签证怎么办理" in drift
