"""Serving telemetry into training, the trainer half, trained for real: a dataset version that carries a serving
profile gets a max_length that covers the customers' longer questions and a hand-off threshold calibrated with
their unanswered questions too, and the model records what it used (kefu_model.json, retrieval.json, MLflow)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

FIXTURE_DATASET = Path(__file__).resolve().parents[2] / "fixtures" / "trainer" / "faq"
OUT_OF_SCOPE = ["火星旅游签证怎么办理", "去火星需要签证吗", "火星签证多少钱"]

pytestmark = pytest.mark.slow


def test_the_trainer_tunes_to_the_profile_and_records_it(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from services.trainer.base_model import resolve_base_model
    from services.trainer.config import TrainConfig
    from services.trainer.sft import train_model

    dataset = tmp_path / "dataset"
    shutil.copytree(FIXTURE_DATASET, dataset)
    profile = {
        "schema_version": 1,
        "window_start": "2026-11-01T00:00:00+00:00",
        "window_end": "2026-12-01T00:00:00+00:00",
        "answers": 800,
        "handoff_rate": 0.12,
        "question_chars": {"count": 800, "p50": 14, "p99": 60},  # customers write far longer than the FAQ
        "sequence_tokens": {"count": 700, "p99": 150},
        "unanswered_clusters": [
            {"question": OUT_OF_SCOPE[0], "count": 30, "handed_off": 30, "flagged": 0, "examples": OUT_OF_SCOPE},
            {"question": "如何注册CloudMax账号", "count": 4, "handed_off": 4, "flagged": 0, "examples": []},
        ],
    }
    (dataset / "serving_profile.json").write_text(json.dumps(profile, ensure_ascii=False), encoding="utf-8")
    home = tmp_path / "home"
    base = resolve_base_model(None, home / "base-models")
    # One epoch: what is under test is the run's inputs and records, not the answers (it misses the gate).
    config = TrainConfig(num_train_epochs=1, gen_max_new_tokens=8, paraphrase_probes=4, hotfix_probes=0, evaluations=1)
    result = train_model(
        dataset,
        tmp_path / "model",
        config,
        base=base,
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        artifact_root=home,
        keep_failed=True,
    )

    record = json.loads((result.model_dir / "kefu_model.json").read_text("utf-8"))["serving_profile"]
    assert record["file"] == "serving_profile.json" and len(record["sha256"]) == 64
    assert record["window_end"] == profile["window_end"] and record["answers"] == 800
    length = record["max_length"]
    assert length["applied"] and length["served_question_chars_p99"] == 60 and length["extra_tokens"] > 0
    assert length["chosen"] == result.max_length == math.ceil(length["sequence_budget"] / 64) * 64
    assert result.max_length > math.ceil(length["dataset_sequence_p99"] / 64) * 64 or length["clamped"]
    probes = record["handoff_probes"]
    assert probes["probes"] == 3 and probes["used"][0]["question"] == OUT_OF_SCOPE[0]
    assert probes["skipped"][0]["reason"] == "now an FAQ entry of this version"

    retrieval = json.loads((result.model_dir / "retrieval.json").read_text("utf-8"))
    assert retrieval["calibration"]["served_unanswered_probes"] == 3
    assert 0.0 <= result.metrics["handoff_recall_unanswered"] <= 1.0

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    run = client.get_run(result.run_id)
    assert run.data.tags["kefu.serving_profile"] == record["sha256"]
    assert "handoff_recall_unanswered" in run.data.metrics
    logged = client.download_artifacts(result.run_id, "training/serving_profile.json", str(tmp_path / "dl"))
    assert json.loads(Path(logged).read_text("utf-8")) == record
