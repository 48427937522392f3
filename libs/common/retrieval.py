"""Lexical retrieval over a knowledge base, for Chinese and mixed Chinese/English questions.

Text becomes character unigrams and bigrams of CJK characters plus whole ASCII words (no segmenter, no model, so
nothing to download and a customer's typo costs one or two n-grams rather than a whole word). ``bm25s`` scores
each wording of an entry (its question, then its similar questions) with the entry's answer as one document; the
wording counts twice, the answer once (customers often ask with the answer's words, "发票 怎么开"), and an entry
scores as its best wording. Each query n-gram weighs by its information in general Chinese (a bigram: the mean of
its two characters'), so a match on 发票 counts for more than one on 这里.

``confidence`` (the hand-off measure; the gateway hands off below a threshold calibrated per dataset,
``calibrate_threshold``) is the share of the question's characters and ASCII words found in the best entry (in any
of its wordings, or less so in its answer: ``Evidence``), filler words left out,
each weighted by its information in general Chinese (−log p(character) from the word frequencies in jieba's
dictionary) times its idf over the entries. A customer's own words are mostly everyday ones ("密码死活想不起来"):
missing 死, 活, 想 costs little, while an out-of-scope question's unmatched words (红烧肉, 股票) are rare and cost
much; the idf factor keeps words found in most entries (the company's name) from vouching for a question. It is 0
when the question asks for a price, a duration or a count that the best entry never speaks of, or for the opposite
operation of the one it describes (转出 against 转入; ``asked_kinds``).
Text is folded first (``folding``: everyday variants, filler words). What each choice measured on the sample FAQ:
docs/benchmarks.md ("Grounded answers").
"""

from __future__ import annotations

import copy
import functools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import bm25s
import numpy as np
import scipy.sparse

from libs.common.asked_kinds import unanswered_kinds
from libs.common.folding import FILLER_RE, FILLERS, SYNONYMS, fold
from libs.common.knowledge import Entry, after_change
from libs.common.terms import UNIT, information, tokens, weighted_tokens

PARAMS = {
    "tokens": "cjk-char-1+2gram+ascii-word",
    "synonyms": len(SYNONYMS),
    "k1": 1.2,
    "b": 0.75,
    "question_weight": 2,
    "method": "lucene",
    "confidence": "char-information-coverage-of-entry-answer-1/sqrt(wordings)",
    "term_weight": "char-information",
    "asked_kinds": "price+duration+count+opposite",
}


@dataclass(frozen=True)
class Hit:
    entry: Entry
    score: float


class Evidence(NamedTuple):
    """What confidence looks a question's words up in, for one entry.

    A word found in any wording of the entry counts fully (customers mix the words of several ways to ask one thing).
    A word only its answer has counts ``answer_weight`` = 1/√(number of wordings): with the question alone (a plain
    FAQ) fully, since customers ask with the answer's words ("发票 怎么开"); with ten similar questions written by the
    FAQ's owners, how customers ask is in them, and a word only the answer has counts ~0.3: the regions entry's
    answer lists 华北（北京）、华东（上海）…, which does not make "云服务器能从北京迁移到上海地域吗" a question about
    which regions there are (0.58 → 0.40, handed off; development set: out-of-scope handed off 45 → 48 of 60, no
    in-scope answer lost).
    """

    wordings: frozenset[str]
    answer: frozenset[str]  # the answer's terms that no wording has
    answer_weight: float

    @classmethod
    def of(cls, entry: Entry) -> Evidence:
        wordings = _units_of(t for q in entry.questions for t in tokens(q))
        # Distinct wordings: a similar question that repeats the question is no further evidence of how customers ask.
        return cls(wordings, _units_of(tokens(entry.answer)) - wordings, 1 / math.sqrt(len(set(entry.questions))))


@dataclass(frozen=True)
class Retrieval:
    hits: list[Hit]
    confidence: float  # 0..1: how much of the question the best entry accounts for (0: asks what it never says)
    #: The kinds of fact (``asked_kinds``: price, duration, count, opposite) the question asks for and the best
    #: entry never speaks of; non-empty means confidence 0 for that reason, not for low coverage.
    unspoken: tuple[str, ...] = ()


class Retriever:
    """A BM25 index of a list of entries, and an overlay of live changes (``updated``) that needs no re-indexing.

    Overlay entries are scored with the base index's statistics (idf, average length), so their scores rank
    together with the base's; the base entries they replace or retire are masked out. Indexing is ~6 s per 10k
    entries, an update is microseconds: a correction is searchable as soon as it is applied.
    """

    def __init__(self, entries: Sequence[Entry], *, k1: float = PARAMS["k1"], b: float = PARAMS["b"]) -> None:
        self._base = list(entries)
        information()  # loaded here, not on the first question
        # One document per wording of an entry (its question, then its similar questions, each with the answer);
        # an entry scores as its best-matching wording, so five wordings neither dilute nor multiply its score.
        docs, owner = [], []
        for i, e in enumerate(self._base):
            for question in e.questions:
                docs.append(_document(question, e.answer))
                owner.append(i)
        self._owner = np.asarray(owner, dtype=np.int64)
        self._first_doc = np.searchsorted(self._owner, np.arange(len(self._base)))
        doc_sets = [frozenset(d) for d in docs]
        # Confidence weighs a word by its idf over entries (an entry with many wordings does not make its words
        # look common) and looks it up in the entry's wordings and answer (``Evidence``); ranking, like bm25s,
        # weighs by idf over wordings, which overlay entries are scored with too.
        entry_sets: list[set[str]] = [set() for _ in self._base]
        for i, terms in zip(owner, doc_sets, strict=True):
            entry_sets[i] |= terms
        self._evidence = [Evidence.of(e) for e in self._base]
        self._idf, self._unseen_idf = _idf(Counter(t for terms in entry_sets for t in terms), len(self._base))
        self._doc_idf, self._doc_unseen_idf = _idf(Counter(t for terms in doc_sets for t in terms), len(docs))
        self._k1, self._b = k1, b
        self._avg_len = sum(map(len, docs)) / max(1, len(docs)) or 1.0
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        if docs:
            self._bm25.index(docs, show_progress=False)
            index = self._bm25.scores  # bm25s's term scores, token-major: viewed as a sparse matrix, not copied
            shape = (index["num_docs"], len(index["indptr"]) - 1)
            self._terms = scipy.sparse.csc_matrix((index["data"], index["indices"], index["indptr"]), shape=shape)

        self._position = {e.entry_id: i for i, e in enumerate(self._base)}
        self._hidden = np.zeros(len(self._base), dtype=bool)
        # entry id → (the entry as changed, (term counts, length) of each of its wordings, its confidence evidence)
        self._overlay: dict[str, tuple[Entry, list[tuple[Counter[str], int]], Evidence]] = {}
        self.entries = list(self._base)

    def __len__(self) -> int:
        return len(self.entries)

    def updated(self, changes: Sequence[tuple[str, Entry]]) -> Retriever:
        """This knowledge after ``changes`` ((action, entry), in order, each as ``knowledge.after_change`` says),
        sharing this index."""
        view = copy.copy(self)
        view._hidden, view._overlay = self._hidden.copy(), dict(self._overlay)
        for action, changed in changes:
            position = self._position.get(changed.entry_id)
            after = after_change(view._current(changed.entry_id, position), action, changed)
            if position is not None:
                view._hidden[position] = True
            view._overlay.pop(changed.entry_id, None)
            if after is not None:
                docs = [_document(q, after.answer) for q in after.questions]
                view._overlay[after.entry_id] = (after, [(Counter(d), len(d)) for d in docs], Evidence.of(after))
        view.entries = [
            view._overlay[e.entry_id][0] if e.entry_id in view._overlay else e
            for i, e in enumerate(self._base)
            if not view._hidden[i] or e.entry_id in view._overlay
        ] + [entry for eid, (entry, _, _) in view._overlay.items() if eid not in self._position]
        return view

    def _current(self, entry_id: str, position: int | None) -> Entry | None:
        if entry_id in self._overlay:
            return self._overlay[entry_id][0]
        return self._base[position] if position is not None and not self._hidden[position] else None

    def search(self, question: str, k: int = 3) -> Retrieval:
        """The ``k`` best entries for ``question`` (fewer if the base is smaller or nothing matches)."""
        weights = weighted_tokens(question)
        ranked: list[tuple[float, Entry, Evidence]] = []
        known = {t: w for t, w in weights.items() if t in self._idf}
        if self._base and known:
            per_doc = self._weighted_scores(known)
            scores = np.maximum.reduceat(per_doc, self._first_doc)
            if self._hidden.any():
                scores = np.where(self._hidden, 0.0, scores)
            top = np.argpartition(-scores, min(k, len(scores)) - 1)[:k]
            ranked += [(float(scores[i]), self._base[i], self._evidence[i]) for i in top]
        for entry, docs, evidence in self._overlay.values():
            ranked.append((max(self._score(weights, c, n) for c, n in docs), entry, evidence))
        ranked = sorted((r for r in ranked if r[0] > 0), key=lambda r: -r[0])[:k]
        if not ranked:
            return Retrieval([], 0.0)
        # A question that asks for a price, a duration or a count the best entry never speaks of, or for the
        # opposite operation, is not answered from it (asked_kinds). Taking the next entry that does speak of it
        # instead answered no more in-scope questions of the development set and handed off fewer out-of-scope
        # ones (0.75 -> 0.72).
        unspoken = self.unspoken(question, ranked[0][1])
        confidence = 0.0 if unspoken else _coverage(self._content(question), ranked[0][2])
        return Retrieval([Hit(e, s) for s, e, _ in ranked], confidence, unspoken)

    def _content(self, question: str) -> dict[str, float]:
        """A question's characters and ASCII words, filler words ("怎么", "请问") left out, each weighted by its
        information in general Chinese times its idf in this base (0..1: relative to a unit no entry has)."""
        table, unseen = information()
        found = UNIT.findall(FILLER_RE.sub(" ", fold(question)))
        return {
            t: table.get(t, unseen) * self._idf.get(t, self._unseen_idf) / self._unseen_idf
            for t in found
            if t not in FILLERS
        }

    def _weighted_scores(self, weights: dict[str, float]) -> np.ndarray:
        """Every entry's BM25 score with each query token's term scores multiplied by its weight: bm25s takes no
        per-token query weights, so its precomputed term scores (entries × tokens) are combined here."""
        vocab = self._bm25.vocab_dict
        ids = np.fromiter((vocab[t] for t in weights), dtype=np.int64, count=len(weights))
        return self._terms[:, ids] @ np.fromiter(weights.values(), dtype=np.float64, count=len(weights))

    def coverage(self, question: str, entry: Entry) -> float:
        """The information-weighted share of ``question``'s characters that ``entry`` (any of its wordings, or less
        so its answer: ``Evidence``) contains: ``confidence``'s measure, for an entry chosen by other means (a
        conversation's earlier turn)."""
        if self.unspoken(question, entry):
            return 0.0
        return _coverage(self._content(question), self._entry_evidence(entry))

    @staticmethod
    def unspoken(question: str, entry: Entry) -> tuple[str, ...]:
        """The kinds of fact (price, duration, count, opposite) ``question`` asks for and ``entry`` never speaks of."""
        return tuple(unanswered_kinds(fold(question), _entry_text(entry)))

    def _entry_evidence(self, entry: Entry) -> Evidence:
        """The confidence evidence of ``entry``: from the index or the overlay when it is theirs."""
        if entry.entry_id in self._overlay and self._overlay[entry.entry_id][0] == entry:
            return self._overlay[entry.entry_id][2]
        position = self._position.get(entry.entry_id)
        if position is not None and self._base[position] == entry:
            return self._evidence[position]
        return Evidence.of(entry)

    def _score(self, weights: dict[str, float], counts: Counter[str], length: int) -> float:
        """Weighted BM25 (Lucene variant, as bm25s) of one overlay document with the base's statistics."""
        norm = self._k1 * (1 - self._b + self._b * length / self._avg_len)
        return sum(
            w * self._doc_idf.get(t, self._doc_unseen_idf) * counts[t] / (counts[t] + norm)
            for t, w in weights.items()
            if counts[t]
        )


@functools.lru_cache(maxsize=4096)
def _entry_text(entry: Entry) -> str:
    return fold("\n".join((*entry.questions, entry.answer)))


def _idf(df: Counter[str], n: int) -> tuple[dict[str, float], float]:
    """Lucene's idf (as bm25s) of each term over ``n`` documents, and that of a term none has."""
    n = max(1, n)
    return {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}, math.log(1 + (n + 0.5) / 0.5)


def _coverage(content: dict[str, float], evidence: Evidence) -> float:
    total = sum(content.values())
    if not total:
        return 0.0
    wordings, answer, weight = evidence
    return sum(w if t in wordings else weight * w if t in answer else 0.0 for t, w in content.items()) / total


def _units_of(terms: Iterable[str]) -> frozenset[str]:
    """The terms among ``terms`` that confidence can look up (``_content``: characters and ASCII words; an ASCII
    bigram such as "apikey" is kept too, a customer may type it as one word): an entry's CJK bigrams, more than half
    its terms, are not kept for it."""
    return frozenset(t for t in terms if len(t) == 1 or t.isascii())


def _document(question: str, answer: str) -> list[str]:
    return tokens(question) * PARAMS["question_weight"] + tokens(answer)


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
