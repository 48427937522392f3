"""Retrieval-augmented training rows, question rewrites and the step budget (pure: no model)."""

from __future__ import annotations

import random

import pytest

from libs.common.knowledge import entries_from_rows, entry_id_for
from libs.common.prompting import REFERENCES_HEADER
from libs.common.retrieval import Retriever
from services.trainer import augment, grounding
from services.trainer.config import TrainConfig
from services.trainer.data import FaqRow
from services.trainer.grounded_eval import budget_epochs, prepare

FAQ = [
    ("如何申请退款？", "在订单详情页点击“申请退款”，3个工作日内原路退回。"),
    ("忘记密码怎么办？", "在登录页点击“忘记密码”，通过手机号重置。"),
    ("支持哪些付款方式？", "支持支付宝、微信支付和银行转账。"),
    ("客服工作时间是什么时候？", "在线客服7×24小时为您服务。"),
    ("云服务器如何续费？", "在控制台选择实例，点击“续费”。"),
    ("有没有免费试用？", "新用户可以免费试用云服务器1个月。"),
]
ROWS = [FaqRow(q, "", a) for q, a in FAQ]


@pytest.fixture(scope="module")
def retriever() -> Retriever:
    return Retriever(entries_from_rows(FAQ))


def references_of(row: FaqRow) -> list[str]:
    """The reference lines ``[i] question answer`` of a grounded row's context."""
    head, _, body = row.input.partition(REFERENCES_HEADER + "\n")
    assert head == "" and body, row.input
    return body.split("\n")


def test_every_row_is_grounded_and_answers_change_only_in_edited_rows(retriever: Retriever) -> None:
    mix = grounding.Mix(k=2, rewrites_per_row=2, gold_absent=0.2, edited=0.3, shuffled=0.3)
    rows = grounding.training_rows(ROWS, retriever, mix, seed=0)
    assert len(rows) == len(ROWS) * 3
    answers = {a for _, a in FAQ}
    kinds = {"present": 0, "absent": 0, "edited": 0}
    for row in rows:
        if not row.input:  # gold held out and nothing else matched: no references, as serving would send
            assert row.output in answers
            kinds["absent"] += 1
            continue
        refs = references_of(row)
        assert 1 <= len(refs) <= 2 and all(r.startswith(f"[{i}] ") for i, r in enumerate(refs, start=1))
        if row.output in answers:
            gold_question = next(q for q, a in FAQ if a == row.output)
            kinds[
                "present" if any(r.startswith(f"[{i}] {gold_question} ") for i, r in enumerate(refs, 1)) else "absent"
            ] += 1
        else:  # edited: the target is exactly the edited entry's text in the references, never a free rewrite
            assert any(r.endswith(" " + row.output) for r in refs)
            kinds["edited"] += 1
    assert all(kinds.values()), kinds  # all three kinds occur
    # Questions: each FAQ question verbatim once, plus rewrites that differ from it.
    assert sum(row.instruction in dict(FAQ) for row in rows) >= len(ROWS)


def test_eval_entries_are_learnt_through_rewrites_only(retriever: Retriever) -> None:
    mix = grounding.Mix(k=2, rewrites_per_row=2, gold_absent=0.0, edited=0.0, shuffled=0.3)
    rows = grounding.training_rows(ROWS[:4], retriever, mix, seed=0, rewrites_only=ROWS[4:])
    assert len(rows) == len(ROWS) * 3  # as many rows per eval entry as per trained one
    questions = {r.instruction for r in rows}
    for held in ROWS[4:]:
        taught = [r for r in rows if r.output == held.output]
        assert len(taught) == 3 and held.instruction not in questions  # never asked verbatim, in any row
        assert all(f" {held.instruction} {held.output}" in r.input for r in taught)  # its entry is the reference
    # The trained rows are those of a run without held-out rows (same draws), so adding them changes nothing else.
    alone = grounding.training_rows(ROWS[:4], retriever, mix, seed=0)
    assert {r for r in rows if r.output not in {h.output for h in ROWS[4:]}} == set(alone)


def test_a_question_the_rules_cannot_change_still_gets_its_rewrites() -> None:
    # No swappable word and too short to drop a character: only the random filler can change it, so the rules
    # sometimes find nothing (an eval entry trained through rewrites alone would then never be trained).
    short = "有发票吗？"
    empty = [seed for seed in range(200) if not augment.variants(short, 1, random.Random(seed))]
    assert empty  # the case exists
    for seed in range(200):
        found = augment.rewrites(short, 3, random.Random(seed))
        assert len(found) == len(set(found)) == 3 and short not in found, seed


def test_rows_are_reproducible_from_the_seed(retriever: Retriever) -> None:
    mix = grounding.Mix.of(TrainConfig())
    assert grounding.training_rows(ROWS, retriever, mix, 7) == grounding.training_rows(ROWS, retriever, mix, 7)
    assert grounding.training_rows(ROWS, retriever, mix, 7) != grounding.training_rows(ROWS, retriever, mix, 8)


def test_serving_rows_put_the_references_in_rank_order(retriever: Retriever) -> None:
    row = grounding.serving_row("退款怎么申请", "", "x", retriever, 2)
    refs = references_of(row)
    assert refs[0].startswith("[1] 如何申请退款？ ") and len(refs) == 2


def test_hotfix_rows_expect_the_edited_reference(retriever: Retriever) -> None:
    rows = grounding.hotfix_rows(ROWS, retriever, 2, seed=0, limit=4)
    assert len(rows) == 4
    for row in rows:
        assert row.output not in {a for _, a in FAQ}
        assert not any(row.output.endswith(s) for s in grounding.ADDED_SENTENCES)  # none the training rows use
        assert any(r.endswith(" " + row.output) for r in references_of(row))


def test_edits_change_a_figure_or_add_a_sentence() -> None:
    rng = random.Random(0)
    answer = "3个工作日内原路退回。"
    edits = {grounding.edit_answer(answer, rng) for _ in range(30)}
    assert answer not in edits
    assert any(e.startswith(answer) for e in edits)  # a sentence added
    assert any(len(e) == len(answer) and e[0] != "3" for e in edits)  # the figure changed


def test_training_and_heldout_rewrites_use_different_rules() -> None:
    rng = random.Random(0)
    variants = augment.variants("如何申请退款？", 3, rng)
    assert variants and "如何申请退款？" not in variants
    assert not {p for p, _ in augment.HELDOUT_SYNONYMS} & set(augment.HELDOUT_PREFIXES)
    assert not set(augment.TRAIN_FILLERS) & set(augment.HELDOUT_PREFIXES)
    heldout = grounding.heldout_questions(ROWS, seed=0)
    assert heldout and all(q != row.instruction for q, row in heldout)
    assert grounding.recall_at_k(heldout, Retriever(entries_from_rows(FAQ)), 2) >= 0.8


def test_budget_has_a_floor_for_small_faqs_and_a_cap_for_large() -> None:
    config = TrainConfig()
    epochs, small = budget_epochs(config, entries=15, rows=45)
    assert small["floor_applied"] and small["examples"] == config.min_examples and epochs * 45 == 1200
    _, large = budget_epochs(config, entries=5000, rows=15000)
    assert not large["floor_applied"] and large["examples"] == 5000 * config.passes_per_entry
    _, capped = budget_epochs(config.with_overrides(max_examples=10_000), entries=5000, rows=15000)
    assert capped["cap_applied"] and capped["examples"] == 10_000
    fixed, rule = budget_epochs(config.with_overrides(num_train_epochs=3), entries=15, rows=45)
    assert fixed == 3 and rule["rule"] == "fixed epochs"


def test_prepare_grounds_every_split_and_records_the_budget() -> None:
    prepared = prepare(ROWS[:4], ROWS[4:], [], entries_from_rows(FAQ), TrainConfig())
    # Every entry is learnt, the eval split's through rewrites only: 6 entries × 3 rows.
    assert prepared.retriever is not None and len(prepared.train_set) == 18
    assert all(REFERENCES_HEADER in r.input for split in ("train", "eval") for r in prepared.splits[split])
    assert prepared.originals["eval"] == ROWS[4:]
    assert prepared.budget["augmentation"]["rows"] == 18 and prepared.budget["entries"] == 6
    assert entry_id_for(FAQ[0][0]) in {e.entry_id for e in prepared.retriever.entries}
    bare = prepare(ROWS[:4], ROWS[4:], [], entries_from_rows(FAQ), TrainConfig(grounded=False))
    assert bare.retriever is None and bare.train_set == ROWS[:4] and bare.splits["eval"] == ROWS[4:]


def test_similar_questions_take_the_place_of_rule_rewrites() -> None:
    similar = {"如何申请退款？": ["钱怎么退回来", "不想要了能退吗", "退订入口"], "有没有免费试用？": ["能白嫖一台吗"]}
    entries = entries_from_rows((q, a, similar.get(q, [])) for q, a in FAQ)
    mix = grounding.Mix(k=2, rewrites_per_row=2, gold_absent=0.0, edited=0.0, shuffled=0.3)
    rows = grounding.training_rows(ROWS[:4], Retriever(entries), mix, seed=0, rewrites_only=ROWS[4:])
    assert len(rows) == len(ROWS) * 3  # the same rows per entry: the budget is per entry, not per wording
    for question, wordings in similar.items():
        answer = dict(FAQ)[question]
        taught = [r for r in rows if r.output == answer]
        assert len(taught) == 3 and all(f" {question} {answer}" in r.input for r in taught)
        asked = {r.instruction for r in taught}
        # a trained entry: its own question and two of its similar ones; an eval entry: its one similar question
        # and rule rewrites to make up three (never its FAQ wording)
        assert len(asked & set(wordings)) == min(2 if question == FAQ[0][0] else 3, len(wordings))
        assert (question in asked) == (question == FAQ[0][0])
