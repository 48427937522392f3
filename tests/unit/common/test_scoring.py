from __future__ import annotations

import pytest

from libs.common.scoring import char_f1, exact_match, normalize, score


def test_normalize_touches_whitespace_only() -> None:
    assert normalize("  请 拨打\n400-800\t1234。 ") == "请 拨打 400-800 1234。"
    assert normalize("CloudMax") != normalize("cloudmax")


def test_exact_match_ignores_whitespace_differences_only() -> None:
    assert exact_match("支持 支付宝。\n", "支持 支付宝。") == 1.0
    assert exact_match("支持支付宝。", "支持支付宝") == 0.0


@pytest.mark.parametrize(
    ("pred", "ref", "expected"),
    [
        ("支付宝", "支付宝", 1.0),
        ("", "", 1.0),
        ("", "支付宝", 0.0),
        ("微信", "支付宝", 0.0),
        ("支付", "支付宝", 0.8),  # precision 1, recall 2/3
        ("支 付", "支付宝", 0.8),  # spaces are not characters of the answer
    ],
)
def test_char_f1(pred: str, ref: str, expected: float) -> None:
    assert char_f1(pred, ref) == pytest.approx(expected)


def test_score_averages_and_counts() -> None:
    assert score(["甲", "乙丙"], ["甲", "乙丁"]) == {"exact_match": 0.5, "char_f1": pytest.approx(0.75), "n": 2.0}
    assert score([], []) == {"exact_match": 0.0, "char_f1": 0.0, "n": 0.0}
