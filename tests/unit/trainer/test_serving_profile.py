"""The pure parts of serving telemetry into training: reading the profile, the length budget, hand-off probes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from libs.common.knowledge import entry
from services.trainer import serving_profile

QUESTIONS = ["如何退款？", "怎么重置密码？", "发票怎么开？", "客服几点上班？"]  # 5-7 chars, p99 7


def chars(question: str) -> int:  # a stand-in tokenizer: one token per character
    return len(question)


def profile(**overrides: object) -> dict:
    return {
        "schema_version": 1,
        "answers": 500,
        "question_chars": {"count": 500, "p50": 9, "p99": 27},
        "unanswered_clusters": [],
        **overrides,
    }


def test_longer_customer_questions_raise_the_budget_by_their_extra_tokens() -> None:
    budget, record = serving_profile.length_budget(profile(), [40, 50, 60], QUESTIONS, chars)
    # dataset p99 60 + (27 - 7) chars x 1 token/char
    assert budget == 80 and record["applied"] and record["extra_tokens"] == 20 and not record["clamped"]
    assert record["trained_question_chars_p99"] == 7 and record["tokens_per_char"] == 1.0


def test_the_budget_is_clamped_to_the_datasets_own_need_and_twice_it() -> None:
    shorter, record = serving_profile.length_budget(profile(question_chars={"p99": 3}), [40, 60], QUESTIONS, chars)
    assert shorter == 60 and record["extra_tokens"] == 0  # short customers never truncate training rows
    pasted, record = serving_profile.length_budget(profile(question_chars={"p99": 5000}), [40, 60], QUESTIONS, chars)
    assert pasted == 120 and record["clamped"]  # a few pasted logs do not make every sequence huge


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ({"profile": None}, "no serving profile"),
        ({"profile": profile(answers=5)}, "fewer than 30 answers"),
        ({"given": True}, "max_length given explicitly"),
    ],
)
def test_when_the_profile_is_not_applied(given: dict, reason: str) -> None:
    prof = given.get("profile", profile())
    budget, record = serving_profile.length_budget(prof, [60], QUESTIONS, chars, given=given.get("given", False))
    assert budget is None and not record["applied"] and reason in record["reason"]


def test_handoff_probes_take_handed_off_clusters_not_flagged_or_now_answered_ones() -> None:
    clusters = [
        {"question": "火星签证怎么办", "count": 9, "handed_off": 9, "examples": ["火星签证怎么办", "去火星要签证吗"]},
        {"question": "退款多久到账", "count": 5, "handed_off": 0, "flagged": 5, "examples": ["退款多久到账"]},
        {"question": "能开专票吗", "count": 4, "handed_off": 4, "flagged": 1, "examples": ["能开专票吗"]},
    ]  # fmt: skip
    entries = [entry("能开专票吗？", "可以，在费用中心申请。")]  # a correction answered the third one meanwhile
    probes, record = serving_profile.handoff_probes(profile(unanswered_clusters=clusters), entries)
    assert probes == ["火星签证怎么办", "去火星要签证吗"]
    assert record["applied"] and record["used"] == [{"question": "火星签证怎么办", "count": 9, "probes": 2}]
    reasons = {s["question"]: s["reason"] for s in record["skipped"]}
    assert reasons["退款多久到账"].startswith("flagged only") and reasons["能开专票吗"].startswith("now an FAQ entry")


def test_probes_are_capped() -> None:
    clusters = [
        {"question": f"话题{i}", "count": 1, "handed_off": 1, "examples": [f"话题{i}", f"话题{i}吗", f"话题{i}呢", "x"]}
        for i in range(20)
    ]
    probes, record = serving_profile.handoff_probes(profile(unanswered_clusters=clusters), [])
    assert len(probes) == serving_profile.MAX_PROBES == record["probes"]
    assert len(record["used"]) == 10 and record["skipped"][-1]["reason"].startswith("probe cap")
    assert serving_profile.handoff_probes(None, []) == ([], {"applied": False, "probes": 0, "used": [], "skipped": []})


def test_read_hashes_the_file_and_refuses_a_newer_schema(tmp_path: Path) -> None:
    assert serving_profile.read(tmp_path) is None
    (tmp_path / serving_profile.PROFILE_FILE).write_text(json.dumps(profile()), encoding="utf-8")
    read = serving_profile.read(tmp_path)
    assert read is not None and len(read["sha256"]) == 64 and read["answers"] == 500
    record = serving_profile.provenance(read, {"applied": True}, {"probes": 0}, 128)
    assert record["file"] == "serving_profile.json" and record["max_length"] == {"applied": True, "chosen": 128}
    (tmp_path / serving_profile.PROFILE_FILE).write_text(json.dumps(profile(schema_version=2)), encoding="utf-8")
    with pytest.raises(ValueError, match="schema"):
        serving_profile.read(tmp_path)
