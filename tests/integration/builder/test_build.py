"""Real export + gate + repository on the tiny offline model (random weights: agreement, not answer quality)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from services.builder.build import build
from services.builder.engine import Engine, answer_stream, encode_question
from services.builder.errors import BuildError
from services.builder.export import Checkpoint, quantize_int8
from services.builder.gate import run_gate, torch_greedy
from services.builder.gate_prompts import dataset_prompts
from tests.integration.conftest import FAQ, MAX_NEW_TOKENS, Built

pytestmark = pytest.mark.slow


def test_build_writes_a_gated_triton_version(built: Built) -> None:
    result = built.result
    assert (result.triton_model, result.triton_version, result.passed_gate) == ("kefu-chat", 1, True)
    config = (built.repo / "kefu-chat" / "config.pbtxt").read_text()
    assert "decoupled: true" in config and "dynamic_batching" in config
    version = result.version_dir
    assert version == built.repo / "kefu-chat" / "1"
    for name in ("model.py", "model.onnx", "tokenizer.json", "tokenizer_config.json", "kefu_engine.json"):
        assert (version / name).is_file(), name
    meta = json.loads((version / "kefu_engine.json").read_text())
    assert meta["engine_id"] == result.engine_id and meta["precision"] == "fp32"
    assert (meta["model_id"], meta["dataset_id"]) == ("sha-test-model", "sha-test-dataset")
    report = json.loads(result.report_path.read_text())
    print("fp32 gate:", {k: report[k] for k in ("agreement", "exact_match", "decode_tok_s", "torch_decode_tok_s")})
    assert report["agreement"] == 1.0 and report["passed"] is True and report["failed_checks"] == []
    assert report["n_eval"] == 3 and report["n_train"] == len(FAQ) - 3 and report["n_regression"] == 0
    # Random weights answer nothing right, through the engine or torch alike: the relative check has nothing to lose.
    assert report["exact_match"] == report["torch_exact_match"] == 0.0
    assert result.quality["failed_checks"] == "" and result.quality["torch_char_f1"] == report["torch_char_f1"]
    assert not [p for p in built.repo.joinpath("kefu-chat").iterdir() if p.name.startswith(".staging")]


def test_batched_engine_matches_torch_greedy_per_prompt(built: Built, checkpoint: Checkpoint) -> None:
    engine = Engine.from_dir(built.result.version_dir)
    prompts = [encode_question(checkpoint.tokenizer, q) for q, _ in FAQ]
    assert len({len(p) for p in prompts}) > 1  # left padding is exercised
    assert engine.greedy(prompts, MAX_NEW_TOKENS) == torch_greedy(checkpoint, prompts, MAX_NEW_TOKENS)


def test_stream_budgets_and_cancellation_per_request(built: Built, checkpoint: Checkpoint) -> None:
    engine = Engine.from_dir(built.result.version_dir)
    prompts = [encode_question(checkpoint.tokenizer, q) for q, _ in FAQ[:3]]
    seen = {0: 0, 1: 0, 2: 0}
    finished = {}
    for step in engine.stream(prompts, [MAX_NEW_TOKENS, 5, 0], is_cancelled=lambda i: i == 0 and seen[0] >= 3):
        for event in step:
            seen[event.index] += event.token_id is not None
            if event.finish_reason:
                finished[event.index] = event.finish_reason
    assert finished == {0: "cancelled", 1: "length", 2: "length"}
    assert seen == {0: 3, 1: 5, 2: 0}


def test_streamed_text_equals_full_decode(built: Built, checkpoint: Checkpoint) -> None:
    engine = Engine.from_dir(built.result.version_dir)
    questions = [q for q, _ in FAQ[:4]]
    replies = list(answer_stream(engine, checkpoint.tokenizer, questions, [MAX_NEW_TOKENS] * 4))
    expected = torch_greedy(checkpoint, [encode_question(checkpoint.tokenizer, q) for q in questions], MAX_NEW_TOKENS)
    for i in range(4):
        mine = [r for r in replies if r.index == i]
        assert "".join(r.delta for r in mine) == checkpoint.tokenizer.decode(expected[i], skip_special_tokens=True)
        assert [r.finish_reason for r in mine][-1] == "length" and mine[-1].token_count == len(expected[i])
        assert all(r.finish_reason is None for r in mine[:-1])


def test_int8_agreement_is_measured(built: Built, checkpoint: Checkpoint, dataset_dir: Path, tmp_path: Path) -> None:
    version = built.result.version_dir
    int8 = quantize_int8(version / "model.onnx", tmp_path / "model.int8.onnx")
    meta = json.loads((version / "kefu_engine.json").read_text())
    engine = Engine(
        int8,
        num_layers=meta["num_layers"],
        num_kv_heads=meta["num_kv_heads"],
        head_dim=meta["head_dim"],
        eos_token_ids=meta["eos_token_ids"],
        pad_token_id=meta["pad_token_id"],
        max_positions=meta["max_positions"],
    )
    report = run_gate(checkpoint, engine, dataset_prompts(dataset_dir, 64), max_new_tokens=MAX_NEW_TOKENS)
    print("int8 gate:", {k: report[k] for k in ("agreement", "decode_tok_s", "decode_tok_s_batch1", "passed")})
    # Random weights have near-tied logits, so INT8 may legitimately disagree; the number is reported, not judged.
    assert 0.0 <= report["agreement"] <= 1.0 and report["passed"] == (report["agreement"] >= 0.98)


def test_failed_gate_installs_nothing(model_dir: Path, dataset_dir: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    with pytest.raises(BuildError, match="quality gate failed"):
        build(model_dir, repo, precision="int8", dataset_dir=dataset_dir, min_agreement=1.01)
    assert not [p for p in (repo / "kefu-chat").iterdir() if p.name != ".rejected"]
    (report,) = (repo / ".rejected").glob("kefu-chat-*.quality.json")
    data = json.loads(report.read_text())
    print("int8 build gate:", {k: data[k] for k in ("agreement", "decode_tok_s", "export_s", "quantize_s")})
    assert data["passed"] is False and data["precision"] == "int8"


def test_unanswered_corrections_fail_the_gate_and_install_nothing(
    model_dir: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    # A released dataset carries its approved corrections; the random-weight model cannot answer them, so even a
    # perfectly faithful export (agreement 1.0) must not reach Triton.
    dataset = Path(shutil.copytree(dataset_dir, tmp_path / "dataset"))
    fixes = [
        {"instruction": "如何申请退款？", "input": "", "output": "在“我的订单”里点击“退款”，1-3个工作日到账。"},
        {"instruction": "CDN怎么收费？", "input": "", "output": "按流量计费，每月1日出账。"},
    ]
    (dataset / "regression.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in fixes) + "\n")
    repo = tmp_path / "repo"
    with pytest.raises(BuildError, match=r"quality gate failed: regression exact match 0\.00 < 1\.00: 2 of 2 corr"):
        build(model_dir, repo, precision="fp32", dataset_dir=dataset)
    assert not [p for p in (repo / "kefu-chat").iterdir() if p.name != ".rejected"]
    (report,) = (repo / ".rejected").glob("kefu-chat-*.quality.json")
    data = json.loads(report.read_text())
    assert data["passed"] is False and data["agreement"] == 1.0 and data["n_regression"] == 2
    assert [c.split(":")[0] for c in data["failed_checks"]] == ["regression exact match 0.00 < 1.00"]
    assert [m["approved"] for m in data["regression_misses"]] == [r["output"] for r in fixes]
