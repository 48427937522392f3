"""Retrieval-augmented training rows and the measures of grounded answering (pure: no torch).

Every training row's prompt carries the top-k entries retrieved for its question, through the one prompt builder
(``libs.common.prompting``) the gateway also uses. Rows come in three kinds (RAFT-style):
- gold present (most): the row's own entry is among the references, in rank order or shuffled;
- gold absent: only other entries — the model still answers from what it learnt, so a retrieval miss is not fatal;
- edited: the gold entry's answer is changed (a figure, an added sentence) and the TARGET is the edited text, so
  the model learns that the references win over what it memorised — which is what makes live corrections work.
  (Swapping in another entry's whole answer was tried: the tiny base cannot learn to copy in its budget, so it
  learnt to answer with random other answers instead, and train exact match fell from ~0.9 to ~0.65.)
Questions are the FAQ's own, its similar questions (相似问, when the dataset has them) and training rewrites
(``augment``); answers are never rewritten except in edited rows.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from libs.common.knowledge import Entry, entry_id_for
from libs.common.prompting import grounded_context
from libs.common.retrieval import Retriever
from services.trainer import augment
from services.trainer.config import TrainConfig
from services.trainer.data import FaqRow

_DIGIT = re.compile(r"\d")
ADDED_SENTENCES = ("具体以页面显示为准。", "如有疑问可联系人工客服。", "该规则自本月起执行。", "节假日顺延。")
#: The hot-fix probes add sentences training never showed: with the training ones, a model that learnt to append
#: one of four memorised sentences scored as if it followed its references (0.25 with 30% edited rows, every hit
#: one of the four, and no changed figure followed).
HELDOUT_ADDED_SENTENCES = (
    "详情请以官网公告为准。",
    "周末也可以办理。",
    "请保留好相关凭证。",
    "境外用户请联系海外客服。",
)

#: Questions no FAQ of a cloud company answers; hand-off recall is measured on them (the test suite has its own).
OUT_OF_SCOPE_PROBES = (
    # chit-chat and other worlds
    "今天天气怎么样？", "推荐一部好看的电影", "你会写诗吗", "附近有什么好吃的餐厅", "帮我订一张去上海的机票",
    "股票明天会涨吗", "你是男的还是女的", "怎么做红烧肉", "世界杯冠军是谁", "给我讲个笑话",
    "我家猫不吃东西怎么办", "考研英语怎么复习", "iPhone 电池怎么保养", "孩子发烧了该吃什么药", "高铁可以带宠物吗",
    "how do I bake bread", "离婚财产怎么分", "周末去哪里玩比较好", "翻译一下 good morning", "帮我写一封情书",
    # about the company, but rarely in an FAQ
    "你们老板叫什么名字", "你们公司有多少员工", "你们招不招实习生", "公司年会在哪里办", "你们什么时候上市",
    "你们办公室在哪个城市", "能介绍一下你们的创始人吗", "你们和竞争对手比哪个好", "你们赞助比赛吗", "你们的股价是多少",
)  # fmt: skip


@dataclass(frozen=True)
class Mix:
    """How training rows are made: ``TrainConfig``'s knobs of the same names (``of``), where their defaults live."""

    k: int
    rewrites_per_row: int
    gold_absent: float
    edited: float
    shuffled: float

    @classmethod
    def of(cls, config: TrainConfig) -> Mix:
        return cls(config.retrieval_k, config.rewrites_per_row, config.gold_absent, config.edited, config.shuffled)


def references(hits: Sequence[Entry]) -> list[tuple[str, str]]:
    return [(e.question, e.answer) for e in hits]


def edit_answer(answer: str, rng: random.Random, sentences: Sequence[str] = ADDED_SENTENCES) -> str:
    """A plausible change an agent might approve: one figure changed, or a sentence (one of ``sentences``) added."""
    digits = [m.start() for m in _DIGIT.finditer(answer)]
    if digits and rng.random() < 0.6:
        i = rng.choice(digits)
        new = rng.choice([d for d in "0123456789" if d != answer[i]])
        return answer[:i] + new + answer[i + 1 :]
    return answer + rng.choice(sentences)


def _context(hits: list[Entry], gold: Entry | None, k: int, present: bool, rng: random.Random, mix: Mix) -> list[Entry]:
    others = [h for h in hits if gold is None or h.entry_id != gold.entry_id]
    if not present or gold is None:
        return others[:k]
    ranked = [h if h.entry_id != gold.entry_id else gold for h in hits[:k]]
    if all(h.entry_id != gold.entry_id for h in ranked):
        ranked = [*others[: k - 1], gold]
    if rng.random() < mix.shuffled:
        rng.shuffle(ranked)
    return ranked


def training_rows(
    rows: Sequence[FaqRow], retriever: Retriever, mix: Mix, seed: int, rewrites_only: Sequence[FaqRow] = ()
) -> list[FaqRow]:
    """The grounded training set: each row's question and rewrites, each with references and its target.

    ``rewrites_only`` rows (the eval split) are trained through rewrites only, as many rows per entry as the others:
    their FAQ wording is never a training question, but their answers are learnt — the tiny base cannot answer an
    entry it never learnt from its reference alone, so an entry left out of training is one the engine never
    answers. The rewrites are near-verbatim (a swap, a filler, a dropped character), so ``eval_*`` measures little
    generalisation; held-out rewrites (``heldout_questions``, other rules) do."""
    rng = random.Random(seed)
    by_id = {e.entry_id: e for e in retriever.entries}
    out: list[FaqRow] = []
    for i, row in enumerate([*rows, *rewrites_only]):
        gold = by_id.get(entry_id_for(row.instruction))
        # The FAQ's own similar questions are real customer wordings: better training questions than any rule's
        # rewrite, so they take the rewrites' places (as many rows per entry as without them: the budget is per entry).
        similar, trained = list(gold.similar) if gold is not None else [], i < len(rows)
        count = mix.rewrites_per_row + 1
        questions = [row.instruction] if trained else []
        questions += rng.sample(similar, min(count - len(questions), len(similar)))
        if len(questions) < count:
            top_up = augment.variants if trained else augment.rewrites  # an eval entry must get all its rows
            questions += top_up(row.instruction, count - len(questions), rng)
        for question in questions:
            hits = [h.entry for h in retriever.search(question, mix.k + 1).hits]
            roll = rng.random()
            target = row.output
            if roll < mix.gold_absent:
                refs = _context(hits, gold, mix.k, False, rng, mix)
            elif roll < mix.gold_absent + mix.edited and gold is not None:
                target = edit_answer(gold.answer, rng)
                edited = Entry(gold.entry_id, gold.question, target, gold.similar)
                refs = _context(hits, edited, mix.k, True, rng, mix)
            else:
                refs = _context(hits, gold, mix.k, True, rng, mix)
            out.append(FaqRow(question, grounded_context(row.input, references(refs)), target))
    rng.shuffle(out)
    return out


def serving_row(question: str, row_input: str, answer: str, retriever: Retriever, k: int) -> FaqRow:
    """A row exactly as the gateway would prompt it: the question verbatim, references in rank order."""
    hits = [h.entry for h in retriever.search(question, k).hits]
    return FaqRow(question, grounded_context(row_input, references(hits)), answer)


def heldout_questions(rows: Sequence[FaqRow], seed: int) -> list[tuple[str, FaqRow]]:
    """(rewritten question, original row) with the held-out rules; questions the rules cannot change are skipped."""
    rng = random.Random(seed + 7919)
    out = []
    for row in rows:
        q = augment.heldout_variant(row.instruction, rng)
        if q != row.instruction:
            out.append((q, row))
    return out


def recall_at_k(pairs: Sequence[tuple[str, FaqRow]], retriever: Retriever, k: int) -> float:
    if not pairs:
        return 0.0
    found = 0
    for question, row in pairs:
        ids = {h.entry.entry_id for h in retriever.search(question, k).hits}
        found += entry_id_for(row.instruction) in ids
    return found / len(pairs)


def hotfix_rows(rows: Sequence[FaqRow], retriever: Retriever, k: int, seed: int, limit: int) -> list[FaqRow]:
    """Verbatim questions whose gold entry was edited in the references (seeded differently from training, added
    sentences training never saw): the edited text is the expected answer."""
    rng = random.Random(seed + 104729)
    by_id = {e.entry_id: e for e in retriever.entries}
    out = []
    for row in rng.sample(list(rows), min(limit, len(rows))):
        gold = by_id.get(entry_id_for(row.instruction))
        if gold is None:
            continue
        edited = Entry(gold.entry_id, gold.question, edit_answer(gold.answer, rng, HELDOUT_ADDED_SENTENCES))
        hits = [h.entry for h in retriever.search(row.instruction, k).hits]
        refs = [edited if h.entry_id == gold.entry_id else h for h in hits]
        if edited not in refs:
            refs = [*refs[: k - 1], edited]
        out.append(FaqRow(row.instruction, grounded_context(row.input, references(refs)), edited.answer))
    return out
