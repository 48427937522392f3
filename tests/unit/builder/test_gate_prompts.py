"""Gate prompts: eval/train sampled, every approved correction (regression.jsonl) kept, grounded as served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from libs.common.prompting import REFERENCES_HEADER
from services.builder.errors import BuildError
from services.builder.gate_prompts import dataset_prompts, grounded, held_prompts


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    lines = [json.dumps({"instruction": q, "input": "", "output": a}, ensure_ascii=False) for q, a in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    write(
        tmp_path / "eval.jsonl", [("如何申请退款？", "在订单详情页申请退款。"), ("忘记密码怎么办？", "点击忘记密码。")]
    )
    write(tmp_path / "train.jsonl", [("CDN怎么收费？", "按流量计费。"), ("有没有免费试用？", "新用户免费一个月。")])
    write(tmp_path / "regression.jsonl", [(f"纠正问题{i}？", f"批准的答案{i}。") for i in range(3)])
    return tmp_path


def test_regression_rows_are_all_gated_after_the_sampled_splits(dataset: Path) -> None:
    prompts = dataset_prompts(dataset, 1)
    assert [(p.split, p.gold) for p in prompts] == [
        ("eval", "在订单详情页申请退款。"),
        ("train", "按流量计费。"),
        ("regression", "批准的答案0。"),
        ("regression", "批准的答案1。"),
        ("regression", "批准的答案2。"),
    ]


def test_no_regression_file_means_no_regression_prompts(dataset: Path) -> None:
    (dataset / "regression.jsonl").unlink()
    assert {p.split for p in dataset_prompts(dataset, 64)} == {"eval", "train"}


def test_a_regression_row_without_its_correction_is_an_error(dataset: Path) -> None:
    (dataset / "regression.jsonl").write_text(json.dumps({"instruction": "q"}) + "\n")
    with pytest.raises(BuildError, match="regression row needs 'output'"):
        dataset_prompts(dataset, 64)


def test_regression_prompts_are_grounded_like_the_others(dataset: Path) -> None:
    write(dataset / "regression.jsonl", [("怎么申请退款？", "在“我的订单”里申请退款。")])
    prompts = grounded(dataset_prompts(dataset, 64), dataset, k=2)
    fix = prompts[-1]
    assert fix.split == "regression" and fix.context.startswith(REFERENCES_HEADER)
    assert "如何申请退款？" in fix.context  # the knowledge base entry the gateway would retrieve for it


def test_held_samples_include_every_regression_sample(tmp_path: Path) -> None:
    samples = {
        "eval": [{"question": f"e{i}", "reference": "r"} for i in range(3)],
        "regression": [{"question": f"c{i}", "reference": "fix"} for i in range(3)],
    }
    (tmp_path / "eval_samples.json").write_text(json.dumps(samples))
    assert [(p.question, p.split) for p in held_prompts(tmp_path, 1)] == [
        ("e0", "eval"),
        ("c0", "regression"),
        ("c1", "regression"),
        ("c2", "regression"),
    ]
