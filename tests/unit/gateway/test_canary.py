"""The canary verdict decided by evidence: real answers and the shadow replay's comparison with the live engine."""

from __future__ import annotations

import pytest

from services.gateway.canary import Health, Probe, Reply, compare, judge, side, verdict
from services.gateway.settings import Settings

SETTINGS = Settings(
    canary_requests=10,
    canary_seconds=60,
    canary_min_answers=4,
    canary_max_error_rate=0.1,
    canary_max_latency_ratio=1.5,
    canary_max_quality_drop=0.03,
)
NO_SHADOW = SETTINGS.model_copy(update={"canary_shadow": False})
PROBES = [
    Probe("发票怎么开？", "在控制台申请发票。", "regression"),
    Probe("如何退款？", "在订单页申请退款。", "eval"),
    Probe("忘记密码怎么办？", "在登录页重置密码。", "eval"),
    Probe("随便聊聊", None, "recent"),
]
RIGHT = [Reply(p.reference or "你好", ms_per_token=10.0) for p in PROBES]


def evidence(canary: list[Reply], live: list[Reply] = RIGHT) -> dict:
    return compare(PROBES, canary, live)


def test_side_scores_hand_offs_and_errors_as_misses_and_counts_only_judged_questions() -> None:
    replies = [Reply("", handoff=True), Reply("在订单页申请退款。"), Reply("", error="boom"), Reply("随便")]
    figures = side(PROBES, replies)
    assert figures["n"] == 4 and figures["errors"] == 1
    assert figures["handoff_rate"] == pytest.approx(1 / 3, abs=1e-3)  # of the 3 questions with an approved answer
    assert figures["char_f1"] == pytest.approx(1 / 3, abs=1e-3)
    assert figures["corrections_honoured"] == 0.0  # the correction was handed off, not answered


@pytest.mark.parametrize(
    ("canary", "reason"),
    [
        ([Reply("开不了。"), *RIGHT[1:]], "corrections honoured 0%"),
        ([RIGHT[0], Reply("在登录页重置密码。"), Reply("在订单页申请退款。"), RIGHT[3]], "answers worse than live"),
        ([RIGHT[0], Reply("", handoff=True), *RIGHT[2:]], "hands off more"),
        ([*RIGHT[:3], Reply("", error="engine failed")], "errors in 4 replayed"),
        ([Reply(r.text, ms_per_token=30.0) for r in RIGHT], "3.00x live's ms/token"),
    ],
)
def test_a_canary_worse_than_live_on_the_replay_is_named_worse(canary: list[Reply], reason: str) -> None:
    worse = judge(evidence(canary), SETTINGS)
    assert worse and reason in "; ".join(worse)


def test_a_canary_as_good_as_live_is_not_worse() -> None:
    assert judge(evidence(RIGHT), SETTINGS) == []
    slightly = [Reply(r.text, ms_per_token=14.0) for r in RIGHT]  # within 1.5 × live
    assert judge(evidence(slightly), SETTINGS) == []


def test_speed_is_compared_question_by_question_so_one_slow_moment_does_not_roll_back_a_canary() -> None:
    # Questions differ in speed (short answers cost more per token), so each side's median lands on whichever
    # question noise puts in the middle: one canary answer slowed 3x by a busy moment moved its median from 15 to
    # 25 ms/token, 1.67x live's. Question by question, it was as fast as live on 3 of 4.
    live = [Reply(r.text, ms_per_token=ms) for r, ms in zip(RIGHT, (5.0, 10.0, 20.0, 40.0), strict=True)]
    one_slow = [Reply(r.text, ms_per_token=ms) for r, ms in zip(RIGHT, (5.0, 30.0, 20.0, 40.0), strict=True)]
    found = evidence(one_slow, live)
    assert found["canary"]["ms_per_token_p50"] / found["live"]["ms_per_token_p50"] > SETTINGS.canary_max_latency_ratio
    assert found["latency_ratio_p50"] == 1.0 and judge(found, SETTINGS) == []
    all_slow = [Reply(r.text, ms_per_token=ms * 2) for r, ms in zip(RIGHT, (5.0, 10.0, 20.0, 40.0), strict=True)]
    assert "2.00x live's ms/token" in "; ".join(judge(evidence(all_slow, live), SETTINGS))


def test_evidence_stored_before_per_question_ratios_is_judged_on_its_medians() -> None:
    old = evidence([Reply(r.text, ms_per_token=30.0) for r in RIGHT])
    del old["latency_ratio_p50"]
    assert "3.00x live's ms/token" in "; ".join(judge(old, SETTINGS))


def test_evidence_lists_differing_answers_for_the_operator() -> None:
    found = evidence([Reply("开不了。"), *RIGHT[1:]])
    assert found["probes"] == {"regression": 1, "eval": 2, "recent": 1}
    (only,) = found["differing"]
    assert (only["question"], only["canary"], only["live"]) == ("发票怎么开？", "开不了。", RIGHT[0].text)


GOOD = evidence(RIGHT)
BAD = evidence([Reply("开不了。"), *RIGHT[1:]])


@pytest.mark.parametrize(
    ("canary", "found", "elapsed", "settings", "expected"),
    [
        (Health(0, 0, None), None, 3600, SETTINGS, None),  # no traffic, no replay yet: never promoted on time alone
        (Health(0, 0, None), GOOD, 3600, SETTINGS.model_copy(update={"canary_min_answers": 20}), None),  # too little
        (Health(0, 0, None), GOOD, 61, SETTINGS, True),  # the replay is the evidence
        (Health(0, 0, None), GOOD, 5, SETTINGS, None),  # 4 replayed < 10 answers and time is not up
        (Health(6, 0, 10.0), GOOD, 5, SETTINGS, True),  # 6 real + 4 replayed answers
        (Health(0, 0, None), BAD, 1, SETTINGS, False),  # worse on the replay: rolled back at once
        (Health(3, 2, 10.0), None, 5, SETTINGS, False),  # more errors than the window may have: at once
        (Health(10, 1, 10.0), GOOD, 5, SETTINGS, True),  # 10 % is the limit, not above it
        (Health(10, 0, 16.0), GOOD, 5, SETTINGS, False),  # real answers slower than 1.5 × live
        (Health(3, 0, None), None, 3600, NO_SHADOW, None),  # replay off: real answers only, below the minimum
        (Health(10, 0, 14.0), None, 5, NO_SHADOW, True),
    ],
)
def test_canary_verdict(
    canary: Health, found: dict | None, elapsed: float, settings: Settings, expected: bool | None
) -> None:
    decision = verdict(canary, Health(30, 0, 10.0), found, elapsed, settings)
    assert (decision[0] if decision else None) is expected


def test_the_reason_names_the_evidence() -> None:
    promote, why = verdict(Health(0, 0, None), Health(0, 0, None), GOOD, 61, SETTINGS) or (None, "")
    assert promote and "4 replayed" in why and "char-F1 1.0 vs live 1.0" in why
    rollback, why = verdict(Health(0, 0, None), Health(0, 0, None), BAD, 1, SETTINGS) or (None, "")
    assert rollback is False and why.startswith("shadow replay: approved corrections honoured 0%")
