"""What text becomes for retrieval: CJK characters and ASCII words (units), unigram + bigram tokens, and each
unit's information in general Chinese (the weight a match on it carries). No segmenter and no model: nothing to
download, and a customer's typo costs one or two n-grams rather than a whole word."""

from __future__ import annotations

import functools
import importlib.resources
import itertools
import math
import re
from collections import Counter

from libs.common.folding import fold

UNIT = re.compile(r"[a-z0-9]+|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def units(text: str) -> list[str]:
    """CJK characters and ASCII words of a text (NFKC, lower-cased, synonyms folded, punctuation dropped)."""
    return UNIT.findall(fold(text))


def tokens(text: str) -> list[str]:
    """Unigrams and adjacent-unit bigrams of a text (``units``)."""
    found = units(text)
    return found + [a + b for a, b in itertools.pairwise(found)]


def weighted_tokens(text: str) -> dict[str, float]:
    """``tokens(text)``, each with its weight in a query: the information of its unit (of a bigram, the mean of its
    two), summed over repeats."""
    table, unseen = information()
    found = units(text)
    info = [table.get(u, unseen) for u in found]
    out: dict[str, float] = {}
    for u, w in zip(found, info, strict=True):
        out[u] = out.get(u, 0.0) + w
    for (a, wa), (b, wb) in itertools.pairwise(zip(found, info, strict=True)):
        out[a + b] = out.get(a + b, 0.0) + (wa + wb) / 2
    return out


@functools.cache
def information() -> tuple[dict[str, float], float]:
    """(−log p(character) in general Chinese, the value for a character or ASCII word never seen), from the word
    frequencies in jieba's dictionary (a word's frequency counts for each of its characters). Loaded once, when
    the first index is built: ~0.5 s."""
    counts: Counter[str] = Counter()
    with (importlib.resources.files("jieba") / "dict.txt").open(encoding="utf-8") as f:
        for line in f:
            word, freq = line.split(" ", 2)[:2]
            for ch in word.lower():
                counts[ch] += int(freq)
    total = sum(counts.values())
    return {ch: math.log(total / n) for ch, n in counts.items()}, math.log(total)
