"""The gate's decision from per-prompt outcomes: parity, corrections, no quality lost in export, an optional floor."""

from __future__ import annotations

import pytest

from services.builder.gate_checks import Outcome, Thresholds, failed_checks, judge


def row(split: str, gold: str | None, engine: str, torch: str | None = None, agrees: bool | None = None) -> Outcome:
    torch = engine if torch is None else torch
    return Outcome(f"q-{split}-{gold}", split, gold, engine, torch, engine == torch if agrees is None else agrees)


def test_faithful_engine_of_a_right_model_passes_with_scores_per_split() -> None:
    outcomes = [
        row("eval", "a", "a"),
        row("eval", "b", "x"),  # the trained model is wrong here too: not the export's fault
        row("train", "c", " c "),  # whitespace collapsed, as everywhere (libs.common.scoring)
        row("regression", "fixed", "fixed"),
    ]
    report = judge(outcomes, Thresholds())
    assert report["passed"] is True and report["failed_checks"] == []
    assert (report["n_prompts"], report["n_gold"], report["agreement"]) == (4, 4, 1.0)
    assert report["exact_match"] == report["torch_exact_match"] == 0.75
    assert (report["exact_match_eval"], report["exact_match_train"], report["exact_match_regression"]) == (0.5, 1, 1)
    assert (report["n_eval"], report["n_train"], report["n_regression"]) == (2, 1, 1)
    assert report["char_f1_eval"] == report["torch_char_f1_eval"] == 0.5
    assert report["regression_misses"] == []
    assert {report[k] for k in ("min_agreement", "min_regression", "max_quality_drop", "min_exact_match")} == {
        0.98,
        1.0,
        0.02,
        0.0,
    }


def test_an_unanswered_correction_fails_even_with_perfect_parity() -> None:
    outcomes = [row("train", "a", "a"), row("regression", "new", "old"), row("regression", "fix", "fix")]
    report = judge(outcomes, Thresholds())
    assert report["agreement"] == 1.0 and report["passed"] is False
    assert report["failed_checks"] == [
        "regression exact match 0.50 < 1.00: 1 of 2 corrections not answered as approved"
    ]
    assert report["regression_misses"] == [{"question": "q-regression-new", "approved": "new", "engine": "old"}]
    assert judge(outcomes, Thresholds(min_regression=0.5))["passed"] is True


def test_no_regression_rows_skips_the_regression_check() -> None:
    report = judge([row("eval", "a", "wrong")], Thresholds())
    assert report["passed"] is True and report["n_regression"] == 0


def test_export_that_loses_right_answers_fails_the_relative_check() -> None:
    # 1 of 50 rows lost (0.02) is within the default drop; 2 of 50 (0.04) is not.
    right = [row("train", f"a{i}", f"a{i}", agrees=True) for i in range(48)]
    one_lost = [*right, row("train", "b", "a", "b", agrees=True), row("train", "c", "c")]
    assert failed_checks(one_lost, Thresholds(min_agreement=0)) == []
    two_lost = [*right, row("train", "b", "a", "b", agrees=True), row("train", "c", "a", "c", agrees=True)]
    (reason,) = failed_checks(two_lost, Thresholds(min_agreement=0))
    assert reason.startswith("exact match 0.960 < trained model's 1.000 - 0.020: the engine lost 2 of")


def test_an_engine_better_than_its_checkpoint_is_not_penalised() -> None:
    assert failed_checks([row("eval", "a", "a", "x", agrees=False)], Thresholds(min_agreement=0)) == []


def test_parity_failure_names_the_disagreeing_prompts() -> None:
    outcomes = [row("eval", "a", "x", "y"), row("eval", "b", "z")]
    (reason,) = failed_checks(outcomes, Thresholds())
    assert reason == ("agreement 0.500 < 0.980: the engine's answer differs from the trained model's on 1 of 2 prompts")


def test_absolute_floor_is_off_by_default_and_enforced_when_set() -> None:
    outcomes = [row("eval", "a", "a"), row("eval", "b", "x", "x")]
    assert failed_checks(outcomes, Thresholds()) == []
    assert failed_checks(outcomes, Thresholds(min_exact_match=0.8)) == [
        "exact match 0.500 < minimum 0.800 on 2 gold answers"
    ]


def test_several_failures_are_all_listed() -> None:
    outcomes = [row("regression", "fix", "old", "fix", agrees=False)]
    reasons = failed_checks(outcomes, Thresholds(min_exact_match=0.5))
    assert [r.split(" ")[0:2] for r in reasons] == [
        ["agreement", "0.000"],
        ["regression", "exact"],
        ["exact", "match"],
        ["exact", "match"],
    ]


def test_prompts_without_gold_count_for_parity_only() -> None:
    report = judge([row("eval", None, "x"), row("eval", "a", "a")], Thresholds())
    assert (report["n_prompts"], report["n_gold"], report["exact_match"]) == (2, 1, 1.0)


@pytest.mark.parametrize("key", ["exact_match", "torch_char_f1_regression", "agreement_train", "n_eval"])
def test_report_keys_are_stable_for_engine_built(key: str) -> None:
    assert isinstance(judge([row("eval", "a", "a")], Thresholds())[key], float | int)
