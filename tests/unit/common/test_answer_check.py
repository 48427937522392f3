"""Is an answer grounded in its references: the opening's support, when it can be judged, and the calibrated bar."""

from __future__ import annotations

import pytest

from libs.common.answer_check import MAX_BAR, calibrate_bar, judged, opening_support
from libs.common.prompting import grounded_context

SSL = grounded_context(
    "", [("SSL证书过期了会怎样？", "证书过期后浏览器会提示「不安全」，HTTPS访问可能被拦截，请在到期前续费或重新申请。")]
)


def test_an_answer_drawn_from_its_reference_is_supported() -> None:
    assert opening_support("证书过期后浏览器会提示「不安全」，HTTPS访问可能被拦截。", SSL) == 1.0
    # Punctuation and case do not count: 「」, commas and "https" vs "HTTPS" are the same opening.
    assert opening_support("「证书」过期后，浏览器", SSL) == 1.0


def test_another_entrys_memorised_answer_is_not() -> None:
    # What the tiny engine answered for "SSL证书过期了没续，网站会受影响吗" with the SSL entry as its reference.
    # Only "安全" is found (in "不安全"): a quarter of the opening.
    assert opening_support("安全组是一种虚拟防火墙，用来控制实例的入站和出站流量。", SSL) == 0.25 < MAX_BAR
    # Another entry sharing two words of the reference: half, below the bar the tiny base calibrates (MAX_BAR).
    assert opening_support("域名到期后有30天续费期", SSL.replace("证书过期后", "证书到期后")) == 0.5 < MAX_BAR


def test_only_the_opening_is_judged() -> None:
    # Drifting after a grounded opening is not caught (by design: the verdict comes before streaming starts).
    assert opening_support("证书过期后安全组是一种虚拟防火墙", SSL) == 1.0
    assert opening_support("安全组是一种证书过期后浏览器", SSL, bigrams=4) == 0.25


def test_an_answer_too_short_to_judge() -> None:
    assert not judged("好。")
    assert not judged("证书过期")  # 3 bigrams
    assert judged("证书过期后")
    assert opening_support("好。", SSL) is None  # one character: too short to judge
    assert opening_support("是", SSL) is None


def test_the_bar_keeps_right_answers_and_needs_evidence() -> None:
    assert calibrate_bar([1.0] * 40) == MAX_BAR  # the tiny base: every right answer's opening is in its references
    assert calibrate_bar([0.25] + [1.0] * 40) == 0.25  # a base that rephrases is held to what its right answers reach
    assert calibrate_bar([0.0] + [1.0] * 40) == 0.0  # a right answer with nothing from its references: no check
    assert calibrate_bar([1.0] * 4) == 0.0  # too few right answers to calibrate on
    assert calibrate_bar([0.5] * 10 + [1.0] * 190, keep=0.99) == 0.5
    assert calibrate_bar([0.5] * 1 + [1.0] * 199, keep=0.99) == MAX_BAR  # the lowest 1% may fall below it
    assert calibrate_bar([2 / 3] * 5) <= 2 / 3  # rounded down: never above the support it was set from


@pytest.mark.parametrize("answer", ["", "  ", "\n\n\n", "。！"])
def test_an_answer_without_a_letter_or_digit_is_not_grounded(answer: str) -> None:
    assert opening_support(answer, SSL) == 0.0
