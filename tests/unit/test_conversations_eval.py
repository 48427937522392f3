"""The two-turn accuracy figure of `kefu demo`: the hand-made set is sound, and scoring follows the single-turn rule."""

from __future__ import annotations

import json

from kefu.conversations_eval import SAMPLE_CONVERSATIONS, read_conversations, score_conversations


def test_sample_set_has_twenty_follow_ups_whose_facts_are_in_the_faq() -> None:
    faq = {
        row["question"]: row["answer"]
        for row in map(json.loads, SAMPLE_CONVERSATIONS.with_name("cloudmax_faq.jsonl").read_text().splitlines())
    }
    conversations = read_conversations(SAMPLE_CONVERSATIONS)
    assert len(conversations) >= 20
    for turns in conversations:
        last = turns[-1]
        assert all(fact in faq[last["faq_question"]] for fact in last["facts"]), last


def test_a_follow_up_is_right_only_with_every_fact_and_no_handoff() -> None:
    conversations = [
        [{"question": "发票怎么开？"}, {"question": "要多久？", "facts": ["3个工作日", "「申请开票」"]}],
        [{"question": "怎么退款？"}, {"question": "多久到账？", "facts": ["3到7个工作日"]}],
        [{"question": "工单？"}, {"question": "多久回复？", "facts": ["2小时内"]}],
    ]
    in_context = [
        {"answer": "点击「申请开票」，3个工作日内开具。"},
        {"answer": "3到7个工作日内原路退回。", "handoff": True},  # handed off: not an answer
        {"answer": "一般很快。"},
    ]
    alone = [{"answer": "不知道"}, {"answer": "3到7个工作日"}, {"answer": "2小时内"}]
    result = score_conversations(conversations, in_context, alone)
    assert result["conversations"] == 3
    assert result["two_turn_accuracy"] == 0.333 and result["followup_alone_accuracy"] == 0.667
    assert result["two_turn_handoff"] == 0.333
    assert [w["turns"][1] for w in result["wrong"]] == ["多久到账？", "多久回复？"]
