"""A broken model dir, an impossible precision or bad gate data is one clear BuildError, before any export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from services.builder.build import build
from services.builder.cli import register
from services.builder.errors import BuildError
from services.builder.export import load_checkpoint
from services.builder.gate_prompts import dataset_prompts, held_prompts


def test_valid_model_dir_loads(model_dir: Path) -> None:
    ckpt = load_checkpoint(model_dir)
    assert ckpt.meta["model_id"] == "sha-unit"
    assert ckpt.shape == {"num_layers": 4, "num_kv_heads": 2, "head_dim": 64, "max_positions": 512}
    assert ckpt.eos_token_ids == [ckpt.tokenizer.eos_token_id, ckpt.tokenizer.convert_tokens_to_ids("<|end_of_text|>")]


def test_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: (d / "kefu_model.json").unlink(), "no kefu_model.json"),
        (lambda d: (d / "kefu_model.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "kefu_model.json").write_text(json.dumps({"model_id": "x"})), "lacks dataset_id"),
        (lambda d: (d / "config.json").unlink(), "no config.json"),
        (lambda d: (d / "tokenizer.json").unlink(), "tokenizer"),
        (lambda d: (d / "model.safetensors").write_bytes(b"garbage"), "weights could not be loaded"),
    ],
)
def test_broken_model_dir(model_dir: Path, breakage, message: str) -> None:
    breakage(model_dir)
    with pytest.raises(BuildError, match=message):
        load_checkpoint(model_dir)


def test_chat_template_mismatch(model_dir: Path) -> None:
    meta = json.loads((model_dir / "kefu_model.json").read_text())
    (model_dir / "kefu_model.json").write_text(json.dumps({**meta, "chat_template_sha256": "0" * 64}))
    with pytest.raises(BuildError, match="chat template hash"):
        load_checkpoint(model_dir)


def test_fp16_without_cuda_is_refused(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="needs CUDA"):
        build(model_dir, tmp_path / "repo", precision="fp16")
    assert not (tmp_path / "repo").exists()


def test_unknown_precision(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="unknown precision"):
        build(model_dir, tmp_path / "repo", precision="int4")


def test_no_gate_prompts_is_an_error_before_export(model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KEFU_HOME", str(tmp_path / "home"))
    with pytest.raises(BuildError, match="pass --dataset"):
        build(model_dir, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_dataset_rows_need_instruction(tmp_path: Path) -> None:
    (tmp_path / "eval.jsonl").write_text(json.dumps({"output": "a"}) + "\n")
    with pytest.raises(BuildError, match="needs 'instruction'"):
        dataset_prompts(tmp_path, 10)
    with pytest.raises(BuildError, match="no rows"):
        dataset_prompts(tmp_path / "empty", 10)


def test_dataset_and_held_prompts(tmp_path: Path) -> None:
    rows = [{"instruction": f"q{i}", "input": "ctx" if i == 0 else "", "output": f"a{i}"} for i in range(5)]
    (tmp_path / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n")
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows[2:]))
    prompts = dataset_prompts(tmp_path, 2)
    assert [(p.question, p.context, p.gold, p.split) for p in prompts] == [
        ("q0", "ctx", "a0", "eval"),
        ("q1", "", "a1", "eval"),
        ("q2", "", "a2", "train"),
        ("q3", "", "a3", "train"),
    ]
    samples = {"eval": [{"question": "e", "reference": "r", "prediction": "p"}], "train": []}
    (tmp_path / "eval_samples.json").write_text(json.dumps(samples))
    assert [(p.question, p.gold, p.split) for p in held_prompts(tmp_path, 5)] == [("e", "r", "eval")]


def test_cli_reports_a_broken_model_dir(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer from collapsing the app into ``build`` itself
        """Nothing."""

    result = CliRunner().invoke(app, ["build", str(tmp_path / "missing"), "--out", str(tmp_path / "repo"), "--offline"])
    assert result.exit_code == 1
    assert "build failed" in result.output and "does not exist" in result.output
