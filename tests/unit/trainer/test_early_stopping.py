"""Early stopping judges one split although each evaluation reports both, one split at a time."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from transformers import TrainerControl, TrainerState

from services.trainer.sft import JudgedSplitEarlyStopping


def test_the_other_splits_evaluation_neither_counts_nor_warns(caplog: pytest.LogCaptureFixture) -> None:
    stop = JudgedSplitEarlyStopping(early_stopping_patience=2)
    args = SimpleNamespace(
        metric_for_best_model="eval_train_loss", greater_is_better=False, load_best_model_at_end=True
    )
    state, control = TrainerState(), TrainerControl()
    state.best_metric = 1.0
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # heldout split reported alone: not the judged one
            stop.on_evaluate(args, state, control, {"eval_heldout_loss": 5.0})
    assert stop.early_stopping_patience_counter == 0 and not control.should_training_stop
    assert "early stopping is disabled" not in caplog.text
    for _ in range(2):  # the judged split gets no better: patience runs out
        stop.on_evaluate(args, state, control, {"eval_train_loss": 2.0})
    assert stop.early_stopping_patience_counter == 2 and control.should_training_stop
