"""Which question `kefu demo`'s attach step attaches: a wording the engine missed, never a wrong answer over its
own entry (that needs a correction), else the set's first in-scope question."""

from __future__ import annotations

from pathlib import Path

import pytest

from kefu.demo import set_labels
from kefu.demo_attach import candidates
from libs.common.knowledge import entry

INVOICE = entry("如何申请发票？", "在「费用中心」-「发票管理」点击「申请开票」。")
SPECIAL = entry("可以开增值税专用发票吗？", "可以。企业认证用户在「发票信息」中填写税号后即可申请。")
ENTRIES = {e.question: e for e in (INVOICE, SPECIAL)}


def miss(question: str, *, handoff: bool, entry_ids: list[str]) -> dict:
    return {"question": question, "faq_question": INVOICE.question, "handoff": handoff, "entry_ids": entry_ids}


def test_wording_misses_come_first_and_a_wrong_answer_over_its_own_entry_is_skipped() -> None:
    over_other = miss("请问发票怎么开？", handoff=False, entry_ids=[SPECIAL.entry_id])
    handed_off = miss("开票在哪弄", handoff=True, entry_ids=[INVOICE.entry_id])  # right entry, too unsure
    over_own = miss("发票咋开", handoff=False, entry_ids=[INVOICE.entry_id])
    unknown = {**over_other, "faq_question": "不存在的问题？"}
    first = {"question": "发票怎么申请？", "faq_question": "如何申请发票？"}
    found = candidates([over_own, unknown, over_other, handed_off], first, ENTRIES)
    assert [(missed, row["question"], e.entry_id) for missed, row, e in found] == [
        (True, "请问发票怎么开？", INVOICE.entry_id),
        (True, "开票在哪弄", INVOICE.entry_id),
        (False, "发票怎么申请？", INVOICE.entry_id),
    ]


def test_with_no_miss_the_first_in_scope_question_is_attached_and_without_one_nothing() -> None:
    first = {"question": "发票怎么申请？", "faq_question": "如何申请发票？"}
    assert [(m, r["question"]) for m, r, _ in candidates([], first, ENTRIES)] == [(False, "发票怎么申请？")]
    assert candidates([], None, ENTRIES) == []


def test_question_sets_sharing_a_file_name_are_told_apart_by_their_folder() -> None:
    paths = [Path("data/sample/cloudmax_questions.jsonl"), Path("fx/grounding/p.jsonl"), Path("fx/dev/p.jsonl")]
    assert set_labels(paths) == ["cloudmax_questions.jsonl", "grounding/p.jsonl", "dev/p.jsonl"]
    assert set_labels(paths[:2]) == ["cloudmax_questions.jsonl", "p.jsonl"]
    assert set_labels([Path("a/x/p.jsonl"), Path("b/x/p.jsonl")]) == ["a/x/p.jsonl", "b/x/p.jsonl"]
    assert set_labels([Path("p.jsonl")]) == ["p.jsonl"]
    with pytest.raises(ValueError, match="given twice"):
        set_labels([Path("fx/p.jsonl"), Path("fx/../fx/p.jsonl")])
