"""The trainer's quality gate: which metrics pass, which miss and how a miss reads; its configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.trainer.config import DEFAULT_GATE_MAX, DEFAULT_GATE_MIN, TrainConfig
from services.trainer.gate import check, report, unmeasured

# What the sample FAQ's demo run measures (README): passes the default gate.
GOOD = {
    "train_exact_match": 1.0,
    "regression_exact_match": 1.0,
    "paraphrase_exact_match": 0.86,
    "handoff_rate_in_scope": 0.03,
    "eval_exact_match": 0.0,
}


def test_a_good_run_passes_the_defaults() -> None:
    assert check(GOOD, TrainConfig()) == []


def test_an_undertrained_run_names_each_missed_threshold() -> None:
    # The 15-row FAQ under the old 40-epoch schedule: train EM 0.14.
    bad = {**GOOD, "train_exact_match": 0.14, "paraphrase_exact_match": 0.1, "handoff_rate_in_scope": 0.25}
    assert check(bad, TrainConfig()) == [
        "paraphrase_exact_match 0.10 < 0.50",
        "train_exact_match 0.14 < 0.90",
        "handoff_rate_in_scope 0.25 > 0.10",
    ]


def test_bounds_are_inclusive_and_a_near_miss_is_not_printed_as_equal() -> None:
    cfg = TrainConfig()
    assert check({**GOOD, "train_exact_match": 0.9, "handoff_rate_in_scope": 0.1}, cfg) == []
    # One correction of 600 not answered: 0.998 must fail the 100% regression floor, and say so legibly.
    assert check({**GOOD, "regression_exact_match": 599 / 600}, cfg) == ["regression_exact_match 0.998333 < 1"]


def test_unmeasured_metrics_are_skipped_not_failed() -> None:
    no_regression = {k: v for k, v in GOOD.items() if k != "regression_exact_match"}
    cfg = TrainConfig()
    assert check(no_regression, cfg) == []
    assert unmeasured(no_regression, cfg) == ["regression_exact_match"]
    assert check({}, cfg) == [] and len(unmeasured({}, cfg)) == 4


def test_nan_never_passes() -> None:
    assert check({**GOOD, "paraphrase_exact_match": float("nan")}, TrainConfig()) == [
        "paraphrase_exact_match nan < 0.50"
    ]
    assert check({**GOOD, "handoff_rate_in_scope": float("nan")}, TrainConfig()) == ["handoff_rate_in_scope nan > 0.10"]


def test_report_is_the_gate_json_document() -> None:
    cfg = TrainConfig()
    missed = check({"train_exact_match": 0.5}, cfg)
    doc = report({"train_exact_match": 0.5}, cfg, missed)
    assert doc["passed"] is False and doc["missed"] == ["train_exact_match 0.50 < 0.90"]
    assert doc["gate_min"] == DEFAULT_GATE_MIN and doc["gate_max"] == DEFAULT_GATE_MAX
    assert "train_exact_match" not in doc["unmeasured"]
    assert report(GOOD, cfg, [])["passed"] is True


def test_yaml_overrides_one_threshold_keeps_the_others_and_null_switches_one_off(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(
        "gate_min: {paraphrase_exact_match: 0.3, regression_exact_match: null, eval_char_f1: 0.2}\n"
        "gate_max: {handoff_rate_in_scope: 0.2}\n",
        encoding="utf-8",
    )
    cfg = TrainConfig.from_yaml(path)
    assert cfg.gate_min == {
        "train_exact_match": 0.9,
        "regression_exact_match": None,
        "paraphrase_exact_match": 0.3,
        "eval_char_f1": 0.2,
    }
    metrics = {**GOOD, "regression_exact_match": 0.0, "paraphrase_exact_match": 0.35, "eval_char_f1": 0.1}
    assert check(metrics, cfg) == ["eval_char_f1 0.10 < 0.20"]
    # The config round-trips (the CLI's overrides re-validate a dump) without resurrecting a switched-off bound.
    assert cfg.with_overrides(learning_rate=5e-4).gate_min == cfg.gate_min


@pytest.mark.parametrize(
    "text",
    [
        "gate_min: {train_exact_match: .nan}\n",
        "gate_max: {handoff_rate_in_scope: .inf}\n",
        "gate_min: {'': 0.5}\n",
        "gate_min: {'  ': 0.5}\n",
        "gate_min: {train_exact_match: high}\n",
        "gate_min: [train_exact_match]\n",
        "gate_min: {handoff_rate_in_scope: 0.5}\ngate_max: {handoff_rate_in_scope: 0.2}\n",
    ],
)
def test_bad_thresholds_are_rejected(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationError):
        TrainConfig.from_yaml(path)
