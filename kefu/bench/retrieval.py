"""``retrieval_ms_p99_10k``: time to retrieve the top-k entries for one question from a 10,000-entry knowledge base
on one core (the gateway does this for every question), with a 100,000-entry scale point and a 10,000-entry base
whose entries carry 5 of the sample's similar questions (6 wordings each: 60,000 documents; the goal's point), and
one with all 10 (110,000 documents, reported).

The bases are the sample FAQ's entries, each copied with other products, figures and numbering (so every entry
is distinct, with the sample's vocabulary and length); the questions are the sample's own, reworded by the
held-out rules. Timed one question at a time, as served; medians and p99 over all questions, repeated.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from kefu.bench import sample_rows

PRODUCTS = ("云服务器", "对象存储", "数据库", "CDN", "域名", "负载均衡", "容器服务", "短信服务", "邮件推送", "云盘")
QUESTIONS_TIMED = 400
REPEATS = 3


def _base(size: int, rng: random.Random, similar: int = 0) -> list[Any]:
    from libs.common.knowledge import entry

    rows = sample_rows()
    out = []
    for i in range(size):
        row = rows[i % len(rows)]
        tag = f"{rng.choice(PRODUCTS)}{i // len(rows)}号"
        wordings = [f"{tag}{q}" for q in row.get("similar", [])[:similar]]
        answer = f"{row['answer']}（适用于{tag}，编号{rng.randint(1000, 99999)}）"
        out.append(entry(f"{tag}{row['question']}", answer, wordings))
    return out


def _timed(retriever: Any, questions: list[str], k: int) -> list[float]:
    times = []
    for q in questions:
        started = time.perf_counter()
        retriever.search(q, k)
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(say: Callable[[str], None]) -> dict[str, float]:
    from threadpoolctl import threadpool_limits

    from libs.common.retrieval import Retriever
    from services.trainer import augment

    rng = random.Random(0)
    rows = sample_rows()
    questions = [augment.heldout_variant(rows[i % len(rows)]["question"], rng) for i in range(QUESTIONS_TIMED)]
    results: dict[str, float] = {}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with threadpool_limits(limits=1):  # one core, as one gateway worker serves
        points = ((10_000, "10k", 0), (100_000, "100k", 0), (10_000, "10k_similar", 5), (10_000, "10k_similar10", 10))
        for size, label, similar in points:
            started = time.perf_counter()
            retriever = Retriever(_base(size, rng, similar))
            results[f"retrieval_index_seconds_{label}"] = round(time.perf_counter() - started, 2)
            runs = [_timed(retriever, questions, 2) for _ in range(REPEATS)]
            p50 = float(np.median([np.percentile(r, 50) for r in runs]))
            p99 = float(np.median([np.percentile(r, 99) for r in runs]))
            results[f"retrieval_ms_p50_{label}"], results[f"retrieval_ms_p99_{label}"] = round(p50, 3), round(p99, 3)
            what = f"{size} entries" + (f" with {similar} similar questions each" if similar else "")
            say(f"bench: retrieval over {what}: p50 {p50:.3f} ms, p99 {p99:.3f} ms (one core)")
    return results
