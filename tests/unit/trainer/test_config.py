from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.trainer.config import RENAMED, TrainConfig


def test_defaults_are_the_tiny_base_recipe() -> None:
    cfg = TrainConfig()
    assert (cfg.num_train_epochs, cfg.per_device_train_batch_size, cfg.learning_rate) == (None, 8, 1e-3)
    assert (cfg.lr_scheduler_type, cfg.warmup_steps, cfg.train_sampling_strategy) == ("cosine", 10, "group_by_length")
    assert (cfg.passes_per_entry, cfg.min_examples, cfg.grounded, cfg.retrieval_k) == (40, 1200, True, 1)
    assert cfg.max_length is None and not cfg.lora


def test_from_yaml_and_cli_overrides(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(
        "num_train_epochs: 5\nlearning_rate: 0.0002\nlora: true\nlora_target_modules: [q_proj, v_proj]\n",
        encoding="utf-8",
    )
    cfg = TrainConfig.from_yaml(path)
    assert (cfg.num_train_epochs, cfg.learning_rate, cfg.lora) == (5, 2e-4, True)
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]
    over = cfg.with_overrides(num_train_epochs=7, learning_rate=None, max_length=256)
    assert (over.num_train_epochs, over.learning_rate, over.max_length) == (7, 2e-4, 256)


def test_empty_yaml_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert TrainConfig.from_yaml(path) == TrainConfig()


@pytest.mark.parametrize("text", ["epoch: 3\n", "learning_rate: -1\n", "per_device_train_batch_size: 0\n"])
def test_typos_and_bad_values_are_rejected(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationError):
        TrainConfig.from_yaml(path)


def test_non_mapping_yaml_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="mapping"):
        TrainConfig.from_yaml(path)


def test_old_yaml_names_load_with_a_warning_naming_the_new_key(tmp_path: Path) -> None:
    path = tmp_path / "old.yaml"
    path.write_text(
        "epochs: 2\nlr: 0.0005\nbatch_size: 4\ngrad_accum: 2\nscheduler: linear\ngroup_by_length: false\n",
        encoding="utf-8",
    )
    with pytest.warns(DeprecationWarning) as caught:
        cfg = TrainConfig.from_yaml(path)
    said = " ".join(str(w.message) for w in caught)
    for old, new in RENAMED.items():
        assert f"'{old}' is deprecated, use '{new}'" in said and str(path) in said
    assert (cfg.num_train_epochs, cfg.learning_rate, cfg.per_device_train_batch_size) == (2, 5e-4, 4)
    assert (cfg.gradient_accumulation_steps, cfg.lr_scheduler_type, cfg.train_sampling_strategy) == (
        2,
        "linear",
        "random",
    )


def test_both_names_of_one_knob_are_refused() -> None:
    with pytest.raises(ValidationError, match="both 'lr' and 'learning_rate'"):
        TrainConfig.model_validate({"lr": 1e-3, "learning_rate": 2e-3})


def test_renamed_fields_are_sftconfig_fields() -> None:
    """The new names are TRL's own, so they mean what its documentation says (checked against the installed TRL)."""
    import dataclasses

    from trl import SFTConfig

    sft_fields = {f.name for f in dataclasses.fields(SFTConfig)}
    assert set(RENAMED.values()) <= sft_fields
    shared = {"warmup_steps", "weight_decay", "max_grad_norm", "max_length", "packing", "seed"}
    assert shared <= sft_fields and shared <= set(TrainConfig.model_fields)


def test_search_space_reads_old_names_too() -> None:
    from services.trainer.tune import SearchSpace

    with pytest.warns(DeprecationWarning) as caught:
        space = SearchSpace.model_validate({"lr": [1e-4, 1e-3], "batch_size": [2]})
    assert {str(w.message).split(": ", 1)[1] for w in caught} == {
        "'lr' is deprecated, use 'learning_rate'",
        "'batch_size' is deprecated, use 'per_device_train_batch_size'",
    }
    assert space.learning_rate == (1e-4, 1e-3) and space.per_device_train_batch_size == [2]
