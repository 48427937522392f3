"""Question rewrites: the training rules, and a DIFFERENT rule set held out for measuring paraphrase accuracy.

Only questions are rewritten, never answers. Rules are plain, seeded and recorded (``describe``), so a training
run's augmentation can be reproduced from its dataset card / MLflow params.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

# Swaps customers make without changing the intent; each pair is applied in both directions.
TRAIN_SYNONYMS: tuple[tuple[str, str], ...] = (
    ("如何", "怎么"), ("怎么", "怎样"), ("可以", "能"), ("多久", "多长时间"), ("账号", "账户"),
    ("是否", "能不能"), ("什么", "啥"), ("哪里", "哪儿"), ("修改", "更改"), ("查看", "查询"),
    ("开通", "开启"), ("收费", "费用"), ("为什么", "为啥"), ("申请", "办理"), ("支持", "能用"),
)  # fmt: skip
TRAIN_FILLERS: tuple[str, ...] = ("请问", "你好，", "我想问一下，", "麻烦问下", "您好，请问", "问一下")
# Held out: other fillers, other swaps, other noise — a model that only learnt the training rules won't pass them.
HELDOUT_SYNONYMS: tuple[tuple[str, str], ...] = (
    ("如何", "咋"), ("怎么", "该怎么"), ("可以", "可不可以"), ("多久", "几天"), ("账号", "号"),
    ("吗", "不"), ("办法", "方法"), ("忘记", "忘了"), ("如何", "要怎么"),
)  # fmt: skip
HELDOUT_PREFIXES: tuple[str, ...] = ("哈喽，", "在吗？", "客服你好，", "急！", "打扰一下，")
HELDOUT_SUFFIXES: tuple[str, ...] = ("呢", "啊", "，谢谢", "？？", "，在线等")


def _swap(question: str, pairs: Sequence[tuple[str, str]], rng: random.Random) -> str:
    options = [(a, b) for a, b in pairs if a in question] + [(b, a) for a, b in pairs if b in question]
    if not options:
        return question
    a, b = rng.choice(options)
    return question.replace(a, b, 1)


def _drop_char(question: str, rng: random.Random) -> str:
    positions = [i for i, ch in enumerate(question) if "\u4e00" <= ch <= "\u9fff"]
    if len(positions) < 6:
        return question
    i = rng.choice(positions)
    return question[:i] + question[i + 1 :]


def train_variant(question: str, rng: random.Random) -> str:
    """One training rewrite: a synonym swap, maybe a leading filler, a dropped character half the time."""
    out = _swap(question, TRAIN_SYNONYMS, rng)
    if rng.random() < 0.5:
        out = rng.choice(TRAIN_FILLERS) + out
    if rng.random() < 0.5:
        out = _drop_char(out, rng)
    return out


def heldout_variant(question: str, rng: random.Random) -> str:
    """One evaluation rewrite with rules training never used: swap, trailing question mark dropped, framing."""
    out = _swap(question, HELDOUT_SYNONYMS, rng).rstrip("？?")
    if rng.random() < 0.6:
        out = rng.choice(HELDOUT_PREFIXES) + out
    if rng.random() < 0.6:
        out += rng.choice(HELDOUT_SUFFIXES)
    return out


def variants(question: str, n: int, rng: random.Random) -> list[str]:
    """Up to ``n`` distinct training rewrites, none equal to the question itself."""
    found: list[str] = []
    for _ in range(n * 4):
        candidate = train_variant(question, rng)
        if candidate != question and candidate not in found:
            found.append(candidate)
        if len(found) == n:
            break
    return found


def rewrites(question: str, n: int, rng: random.Random) -> list[str]:
    """``variants``, topped up with leading fillers when the rules find fewer than ``n`` (a short question with no
    swappable word): a question trained only through its rewrites must get them all."""
    found = variants(question, n, rng)
    for filler in TRAIN_FILLERS:
        if len(found) >= n:
            break
        if filler + question not in found:
            found.append(filler + question)
    return found


def describe() -> dict[str, object]:
    """The rules, for the dataset card / MLflow."""
    return {
        "train": {"synonyms": [list(p) for p in TRAIN_SYNONYMS], "fillers": list(TRAIN_FILLERS), "drop_char": 0.5},
        "heldout": {
            "synonyms": [list(p) for p in HELDOUT_SYNONYMS],
            "prefixes": list(HELDOUT_PREFIXES),
            "suffixes": list(HELDOUT_SUFFIXES),
        },
    }
