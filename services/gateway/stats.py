"""Request lengths from real traffic, for the trainer's ``max_length``: histogram and percentiles of the answer log.

Read from the answers table (not process memory), so it survives restarts and covers every replica.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.tables import Answer

BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile (an actual observed length, which is what a max_length must cover)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def histogram(values: list[int]) -> dict[str, int]:
    """Counts per upper bound (``le_16`` … ``le_inf``); each value counted once, in its smallest bucket."""
    counts = {f"le_{b}": 0 for b in BUCKETS} | {"le_inf": 0}
    for v in values:
        bound = next((b for b in BUCKETS if v <= b), None)
        counts[f"le_{bound}" if bound else "le_inf"] += 1
    return counts


def summarize(values: list[int]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "max": ordered[-1] if ordered else 0,
        **{f"p{q}": percentile(ordered, q) for q in (50, 90, 95, 99)},
        "histogram": histogram(ordered),
    }


def suggest_max_length(sequence_p99: int) -> int:
    """The p99 prompt+answer length rounded up to a multiple of 64 (what sequence-length settings like)."""
    return max(64, math.ceil(sequence_p99 / 64) * 64)


async def length_stats(session: AsyncSession, *, since: datetime | None = None, limit: int = 100_000) -> dict:
    stmt = (
        select(Answer.prompt_tokens, Answer.completion_tokens)
        .where(Answer.status == "ok")
        .order_by(Answer.created_at.desc())
        .limit(limit)
    )
    if since is not None:
        stmt = stmt.where(Answer.created_at >= since)
    rows = (await session.execute(stmt)).all()
    prompts = [r.prompt_tokens for r in rows]
    completions = [r.completion_tokens for r in rows]
    sequences = [p + c for p, c in zip(prompts, completions, strict=True)]
    seq = summarize(sequences)
    return {
        "answers": len(rows),
        "since": since.isoformat() if since else None,
        "prompt_tokens": summarize(prompts),
        "completion_tokens": summarize(completions),
        "sequence_tokens": seq,
        "suggested_max_length": suggest_max_length(seq["p99"]) if rows else None,
    }
