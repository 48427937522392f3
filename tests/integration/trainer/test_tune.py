"""`kefu tune` for real on the tiny base: a 3-trial Optuna study over short trainings, each an MLflow child run of
one parent run, stored in its database; the best config is a YAML `kefu train --config` accepts; run again with a
higher --trials, the study resumes (only the missing trials run)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import typer
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from services.trainer.config import TrainConfig
from services.trainer.tune import objective_value

FIXTURE_DATASET = Path(__file__).resolve().parents[2] / "fixtures" / "trainer" / "faq"
STUDY = "kefu-tune-fixture-cloudmax-v1"

pytestmark = pytest.mark.slow


def run_tune(home: Path, trials: int) -> str:
    from services.trainer.cli import register

    app = typer.Typer()
    register(app)
    base = home / "base.yaml"
    # Short trials (a few dozen steps): the search, pruning, tracking and resuming are what is tested here.
    base.write_text(
        yaml.safe_dump(
            {"min_examples": 16, "evaluations": 2, "early_stopping_patience": None, "paraphrase_probes": 8,
             "hotfix_probes": 0, "gen_max_new_tokens": 24, "experiment_name": "kefu-tune-test"}
        ),
        encoding="utf-8",
    )  # fmt: skip
    space = home / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {"learning_rate": [5e-4, 3e-3], "passes_per_entry": [1, 3], "per_device_train_batch_size": [8, 16]}
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        app,
        ["tune", str(FIXTURE_DATASET), "--trials", str(trials), "--config", str(base), "--space", str(space),
         "--out", str(home / "best.yaml")],
        env={"KEFU_HOME": str(home), "KEFU_MLFLOW_TRACKING_URI": None, "KEFU_TRAINER_CONFIG": None},
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_a_study_searches_tracks_writes_the_best_config_and_resumes(tmp_path: Path) -> None:
    output = run_tune(tmp_path, 3)
    print(output)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.load_study(study_name=STUDY, storage=storage)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    # three different configurations
    assert len(finished) == 3 and len({t.params["learning_rate"] for t in finished}) == 3
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    # The objective is the held-out paraphrase score of the trained model (not its loss), as measured by the run.
    assert complete and all(t.value == objective_value(t.user_attrs["metrics"]) for t in complete)
    assert all("paraphrase_char_f1" in t.user_attrs["metrics"] for t in complete)
    assert study.best_value == max(t.value for t in complete) and study.best_value > 0  # some answer text was learnt

    best = TrainConfig.from_yaml(tmp_path / "best.yaml")
    assert best.learning_rate == pytest.approx(study.best_params["learning_rate"])
    assert best.per_device_train_batch_size == study.best_params["per_device_train_batch_size"]
    assert best.passes_per_entry == study.best_params["passes_per_entry"] and best.min_examples == 16

    client = MlflowClient(tracking_uri=f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}")
    experiment = client.get_experiment_by_name("kefu-tune-test")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == STUDY]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 3
    assert parent.data.tags["kefu.tune.best_trial"] == str(study.best_trial.number)
    assert parent.data.metrics["best_objective"] == pytest.approx(study.best_value)
    assert "tune" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert not client.search_registered_models()  # trials are tracked, never registered

    run_tune(tmp_path, 4)  # resumed: one more trial, not four
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 4
