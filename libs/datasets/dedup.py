"""Exact and near-duplicate removal over normalized questions, keeping the better-formed row of each group.

* exact: the same question (and context) after ``canonical_key`` (case, spaces and punctuation ignored), whatever
  the answers say — two answers to one question teach the model to contradict itself;
* near: character n-gram Jaccard similarity of the canonical questions at or above the threshold. MinHash + LSH
  banding (numpy, hashes from hashlib so results never depend on PYTHONHASHSEED or numpy's RNG) only proposes
  candidates; every candidate is confirmed with the exact Jaccard, so the threshold means what it says.

Rows are visited best-formed first (ties: earlier row first) and a row is dropped when it duplicates one already
kept, so the kept row of every group is the best-formed one. Output keeps the input order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from libs.datasets.cleaning import canonical_key
from libs.datasets.records import QAPair

_PRIME = (1 << 31) - 1  # a*x + b stays below 2**63 for 31-bit a, b, x, so uint64 arithmetic cannot overflow
_PLACEHOLDER = re.compile(r"\[(?:PHONE|EMAIL|ID_CARD|BANK_CARD|ADDRESS|SENSITIVE)\]")
_ENDS_SENTENCE = re.compile(r"[。！？!?.…)）」』”》\]]$")
_MIN_RECALL = 0.99


@dataclass(frozen=True)
class DedupResult:
    kept: tuple[int, ...]
    exact: int
    near: int
    #: dropped row → the kept row it duplicates (so its wording can live on as a similar question of that row)
    into: dict[int, int] = field(default_factory=dict)


def question_key(pair: QAPair) -> str:
    """What dedup and split compare: the canonical question plus its context."""
    return canonical_key(pair.instruction + "\n" + pair.input)


def form_score(pair: QAPair) -> tuple[int, int, int, int]:
    """Higher is better-formed: no redaction placeholders, answer ends a sentence, question asks, fuller answer."""
    return (
        -len(_PLACEHOLDER.findall(pair.output)),
        int(bool(_ENDS_SENTENCE.search(pair.output))),
        int(pair.instruction.endswith(("？", "?"))),
        len(pair.output),
    )


def shingles(text: str, n: int) -> frozenset[str]:
    if len(text) <= n:
        return frozenset([text])
    return frozenset(text[i : i + n] for i in range(len(text) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _hash31(data: str) -> int:
    return int.from_bytes(hashlib.blake2b(data.encode("utf-8"), digest_size=8).digest(), "big") % _PRIME


def lsh_shape(num_perm: int, threshold: float) -> tuple[int, int]:
    """(bands, rows): the most selective banding that still proposes a pair at ``threshold`` with p >= 0.99."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= _MIN_RECALL:
            return bands, rows
    return num_perm, 1


class MinHasher:
    """MinHash signatures with ``num_perm`` universal hash functions (a*x + b) mod p."""

    def __init__(self, num_perm: int) -> None:
        self.a = np.array([_hash31(f"a{i}") or 1 for i in range(num_perm)], dtype=np.uint64)
        self.b = np.array([_hash31(f"b{i}") for i in range(num_perm)], dtype=np.uint64)

    def signature(self, grams: frozenset[str]) -> np.ndarray:
        x = np.array(sorted(_hash31(g) for g in grams), dtype=np.uint64)
        return ((np.outer(self.a, x) + self.b[:, None]) % np.uint64(_PRIME)).min(axis=1)


def dedup(
    pairs: Sequence[QAPair],
    *,
    near: bool = True,
    threshold: float = 0.7,
    ngram: int = 3,
    num_perm: int = 128,
) -> DedupResult:
    """Indices of the rows to keep (input order) and how many exact / near duplicates were removed."""
    order = sorted(range(len(pairs)), key=lambda i: (form_score(pairs[i]), -i), reverse=True)
    keys = [question_key(p) for p in pairs]

    first: dict[str, int] = {}
    into: dict[int, int] = {}
    survivors: list[int] = []
    for i in order:
        if keys[i] in first:
            into[i] = first[keys[i]]
            continue
        first[keys[i]] = i
        survivors.append(i)
    exact = len(pairs) - len(survivors)
    if not near:
        return DedupResult(tuple(sorted(survivors)), exact, 0, into)

    hasher = MinHasher(num_perm)
    bands, rows = lsh_shape(num_perm, threshold)
    grams: dict[int, frozenset[str]] = {}
    buckets: dict[tuple[int, bytes], list[int]] = {}
    kept: list[int] = []
    for i in survivors:
        grams[i] = shingles(keys[i], ngram)
        sig = hasher.signature(grams[i])
        band_keys = [(b, sig[b * rows : (b + 1) * rows].tobytes()) for b in range(bands)]
        candidates = sorted({j for key in band_keys for j in buckets.get(key, ())})
        twin = next((j for j in candidates if jaccard(grams[i], grams[j]) >= threshold), None)
        if twin is not None:
            into[i] = twin
            continue
        kept.append(i)
        for key in band_keys:
            buckets.setdefault(key, []).append(i)
    # an exact duplicate of a near duplicate ends on the row that was kept
    resolved = {i: into.get(j, j) for i, j in into.items()}
    return DedupResult(tuple(sorted(kept)), exact, len(survivors) - len(kept), resolved)
