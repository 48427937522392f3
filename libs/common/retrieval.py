"""Lexical retrieval over a knowledge base, for Chinese and mixed Chinese/English questions.

Text becomes character unigrams and bigrams of CJK characters plus whole ASCII words (no segmenter, no model, so
nothing to download and a customer's typo costs one or two n-grams rather than a whole word). ``bm25s`` scores
the entries: an entry's question counts twice, its answer once (customers often ask with the answer's words,
"发票 怎么开"). ``confidence`` is the idf-weighted share of the question's content n-grams that the best entry
contains; the gateway hands off below a threshold calibrated per dataset (``calibrate_threshold``).
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import bm25s
import numpy as np

from libs.common.knowledge import Entry

_UNIT = re.compile(r"[a-z0-9]+|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
#: Function words and greetings that say nothing about WHAT is asked; they neither raise nor lower confidence.
FILLERS = frozenset(
    [
        "请问",
        "你好",
        "您好",
        "麻烦",
        "一下",
        "我想",
        "想问",
        "问下",
        "问问",
        "请教",
        "谢谢",
        "我们",
        "你们",
        "咨询",
        "那个",
        "这个",
        "就是",
        "如何",
        "怎么",
        "怎样",
        "什么",
        "可以",
        "能否",
        "能不能",
        "是否",
        "需要",
        "要是",
        "的话",
        "的",
        "了",
        "吗",
        "呢",
        "啊",
        "吧",
        "呀",
        "哦",
        "嘛",
        "么",
        "是",
        "我",
        "你",
        "您",
        "在",
        "要",
        "想",
        "请",
        "能",
        "会",
        "和",
        "与",
        "及",
        "个",
        "下",
        "一",
        "有",
        "没",
        "不",
    ]
)
PARAMS = {"tokens": "cjk-char-1+2gram+ascii-word", "k1": 1.2, "b": 0.75, "question_weight": 2, "method": "lucene"}


def tokens(text: str) -> list[str]:
    """Unigrams and adjacent-unit bigrams of a text (lower-cased, NFKC, punctuation dropped)."""
    units = _UNIT.findall(unicodedata.normalize("NFKC", text).lower())
    return units + [a + b for a, b in itertools.pairwise(units)]


@dataclass(frozen=True)
class Hit:
    entry: Entry
    score: float


@dataclass(frozen=True)
class Retrieval:
    hits: list[Hit]
    confidence: float  # 0..1: how much of the question the best entry accounts for


class Retriever:
    """A BM25 index of a fixed list of entries; build a new one when the entries change (cheap: ~1 s / 100k)."""

    def __init__(self, entries: Sequence[Entry], *, k1: float = PARAMS["k1"], b: float = PARAMS["b"]) -> None:
        self.entries = list(entries)
        weight = PARAMS["question_weight"]
        docs = [tokens(e.question) * weight + tokens(e.answer) for e in self.entries]
        self._sets = [frozenset(d) for d in docs]
        df = Counter(t for s in self._sets for t in s)
        n = max(1, len(docs))
        self._idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        self._unseen_idf = math.log(1 + (n + 0.5) / 0.5)
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        if docs:
            self._bm25.index(docs, show_progress=False)

    def __len__(self) -> int:
        return len(self.entries)

    def search(self, question: str, k: int = 3) -> Retrieval:
        """The ``k`` best entries for ``question`` (fewer if the base is smaller or nothing matches)."""
        query = tokens(question)
        known = [t for t in query if t in self._idf]
        if not self.entries or not known:
            return Retrieval([], 0.0)
        scores = self._bm25.get_scores(known)
        k = min(k, len(self.entries))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        hits = [Hit(self.entries[i], float(scores[i])) for i in top if scores[i] > 0]
        return Retrieval(hits, self._coverage(query, int(top[0])) if hits else 0.0)

    def _coverage(self, query: list[str], best: int) -> float:
        content = {t for t in query if t not in FILLERS}
        if not content:
            return 0.0
        weights = {t: self._idf.get(t, self._unseen_idf) for t in content}
        found = sum(w for t, w in weights.items() if t in self._sets[best])
        return found / sum(weights.values())


def calibrate_threshold(
    in_scope: Sequence[float], out_of_scope: Sequence[float], *, keep: float = 0.97, balance: float = 0.5
) -> float:
    """Confidence threshold between what the base answers and what it does not.

    ``in_scope``: confidences of held-out rewrites of the base's own questions; their (1-keep) quantile is the
    highest sensible threshold (rewrites by rule stay closer to the FAQ wording than customers do, so it is an
    upper bound). ``out_of_scope``: confidences of questions no FAQ answers; their 90th percentile is the lowest
    sensible one. The threshold lies ``balance`` of the way from the lower to the upper (0: hand off least).
    """
    upper = float(np.quantile(np.asarray(in_scope, dtype=float), 1 - keep)) if in_scope else 0.5
    lower = float(np.quantile(np.asarray(out_of_scope, dtype=float), 0.9)) if out_of_scope else 0.0
    if upper <= lower:  # the two overlap: answer what rewrites of the FAQ reach
        return max(0.0, upper)
    return lower + balance * (upper - lower)
