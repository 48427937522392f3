"""The tuning objective and the pruning hook, without training."""

from __future__ import annotations

import optuna
import pytest

from services.trainer.tune import _ReportToTrial, objective_value


def test_exact_match_decides_then_char_f1_then_time() -> None:
    better_em = objective_value({"paraphrase_exact_match": 0.5, "paraphrase_char_f1": 0.1, "train_seconds": 300})
    worse_em = objective_value({"paraphrase_exact_match": 0.48, "paraphrase_char_f1": 1.0, "train_seconds": 1})
    assert better_em > worse_em
    closer = objective_value({"paraphrase_exact_match": 0.0, "paraphrase_char_f1": 0.6, "train_seconds": 100})
    farther = objective_value({"paraphrase_exact_match": 0.0, "paraphrase_char_f1": 0.5, "train_seconds": 10})
    assert closer > farther
    assert objective_value({"eval_exact_match": 1.0, "train_seconds": 10}) > objective_value(
        {"eval_exact_match": 1.0, "train_seconds": 20}
    )  # ungrounded runs: the eval split; equal quality: the faster run


def test_each_evaluation_is_reported_and_a_hopeless_trial_is_pruned() -> None:
    # Prunes any trial whose reported value (minus the held-out loss) is below -1.
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=-1.0))
    trial = study.ask()
    hook = _ReportToTrial(trial)
    hook.on_evaluate(None, None, None, metrics={"eval_heldout_loss": 0.5, "eval_train_loss": 0.1})
    assert hook.evaluations == 1
    with pytest.raises(optuna.TrialPruned, match=r"held-out loss 3\.0000 after evaluation 2"):
        hook.on_evaluate(None, None, None, metrics={"eval_heldout_loss": 3.0})
    hook.on_evaluate(None, None, None, metrics={"epoch": 1.0})  # no loss in this log: nothing reported
    assert hook.evaluations == 2
