"""The canary verdict, decided by evidence: real canary answers (errors, speed) and the shadow replay (the same
questions put to the canary and the live engine, off the customer path: corrections honoured, answers to unchanged
questions no worse, hand-off rate, errors, speed). Pure functions; ``rollout`` applies the decision.

No evidence, no promotion: a canary is promoted only once it has ``canary_min_answers`` answers (real + replayed),
whatever the time. It is rolled back as soon as the evidence shows it worse than the live engine.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.scoring import char_f1, exact_match
from libs.common.tables import Answer
from services.gateway.settings import Settings

#: A correction counts as honoured when the answer is (nearly) the approved text: whitespace and a stray
#: character aside. Lower scores mean the customer still gets the old or another answer.
HONOURED_F1 = 0.9


@dataclass(frozen=True)
class Health:
    requests: int
    errors: int
    ms_per_token_p50: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


async def health_since(session: AsyncSession, engine_id: str, since: datetime) -> Health:
    """Real answers of ``engine_id`` since ``since`` (finished ones: ok or error, not cancelled)."""
    rows = (
        await session.execute(
            select(Answer.status, Answer.latency_ms, Answer.completion_tokens)
            .where(Answer.engine_id == engine_id, Answer.created_at >= since, Answer.status.in_(("ok", "error")))
            .order_by(Answer.created_at.desc())
            .limit(10_000)
        )
    ).all()
    per_token = [r.latency_ms / max(r.completion_tokens, 1) for r in rows if r.status == "ok" and r.latency_ms]
    return Health(
        requests=len(rows),
        errors=sum(r.status == "error" for r in rows),
        ms_per_token_p50=statistics.median(per_token) if per_token else None,
    )


@dataclass(frozen=True)
class Probe:
    """One replayed question. ``reference`` is the approved answer (None: judged on hand-off, errors and speed only)."""

    question: str
    reference: str | None
    kind: str  # regression (an approved correction) | eval (held-out FAQ row) | recent (a customer's question)


@dataclass(frozen=True)
class Reply:
    """One engine's reply to a probe."""

    text: str
    handoff: bool = False
    error: str | None = None
    ms_per_token: float | None = None


def side(probes: Sequence[Probe], replies: Sequence[Reply]) -> dict[str, Any]:
    """One engine's figures over the probes: a hand-off or an error scores 0 against an approved answer."""
    judged = [(p, r) for p, r in zip(probes, replies, strict=True) if p.reference is not None]
    corrections = [(p, r) for p, r in judged if p.kind == "regression"]

    def f1(p: Probe, r: Reply) -> float:
        return 0.0 if r.handoff or r.error else char_f1(r.text, p.reference or "")

    speeds = [r.ms_per_token for r in replies if r.ms_per_token is not None]
    return {
        "n": len(replies),
        "errors": sum(r.error is not None for r in replies),
        "handoff_rate": round(sum(r.handoff for _, r in judged) / len(judged), 4) if judged else 0.0,
        "char_f1": round(sum(f1(p, r) for p, r in judged) / len(judged), 4) if judged else None,
        "exact_match": (
            round(sum(exact_match(r.text, p.reference or "") for p, r in judged if not r.error) / len(judged), 4)
            if judged
            else None
        ),
        "corrections_honoured": (
            round(sum(f1(p, r) >= HONOURED_F1 for p, r in corrections) / len(corrections), 4) if corrections else None
        ),
        "ms_per_token_p50": round(statistics.median(speeds), 3) if speeds else None,
    }


def compare(probes: Sequence[Probe], canary: Sequence[Reply], live: Sequence[Reply]) -> dict[str, Any]:
    """The evidence row stored on the canary's deployment: both sides' figures and a few differing answers."""
    differing = [
        {"question": p.question, "reference": p.reference, "canary": c.error or c.text, "live": lv.error or lv.text}
        for p, c, lv in zip(probes, canary, live, strict=True)
        if (c.error or c.text) != (lv.error or lv.text)
    ]
    # Speed is compared question by question: both engines answered it back to back, under the same load, so the
    # median of the per-question ratios is steady where the ratio of two medians swings with whatever else the
    # machine ran meanwhile (CI on 2 busy cores rolled back a copy of the live weights, most likely on speed).
    ratios = [c.ms_per_token / lv.ms_per_token for c, lv in zip(canary, live, strict=True)
              if c.ms_per_token and lv.ms_per_token]  # fmt: skip
    return {
        "n": len(probes),
        "probes": {kind: sum(p.kind == kind for p in probes) for kind in ("regression", "eval", "recent")},
        "canary": side(probes, canary),
        "live": side(probes, live),
        "latency_ratio_p50": round(statistics.median(ratios), 3) if ratios else None,
        "differing": differing[:5],
    }


def judge(evidence: dict[str, Any], settings: Settings) -> list[str]:
    """Why the replay shows the canary worse than the live engine; empty: at least as good."""
    c, lv, worse = evidence["canary"], evidence["live"], []
    if c["corrections_honoured"] is not None and c["corrections_honoured"] < settings.canary_min_corrections:
        worse.append(
            f"approved corrections honoured {c['corrections_honoured']:.0%} < {settings.canary_min_corrections:.0%}"
        )
    both = c["char_f1"] is not None and lv["char_f1"] is not None
    if both and c["char_f1"] < lv["char_f1"] - settings.canary_max_quality_drop:
        worse.append(f"answers worse than live: char-F1 {c['char_f1']:.3f} vs {lv['char_f1']:.3f}")
    if c["handoff_rate"] > lv["handoff_rate"] + settings.canary_max_handoff_increase:
        worse.append(f"hands off more: {c['handoff_rate']:.0%} vs {lv['handoff_rate']:.0%} of answerable questions")
    allowed = lv["errors"] + settings.canary_max_error_rate * max(c["n"], 1)
    if c["errors"] > allowed:
        worse.append(f"{c['errors']} errors in {c['n']} replayed questions (live: {lv['errors']})")
    ratio = evidence.get("latency_ratio_p50")
    if "latency_ratio_p50" not in evidence and c["ms_per_token_p50"] and lv["ms_per_token_p50"]:
        ratio = c["ms_per_token_p50"] / lv["ms_per_token_p50"]  # evidence stored before per-question ratios
    if ratio is not None and ratio > settings.canary_max_latency_ratio:
        worse.append(
            f"slower: {ratio:.2f}x live's ms/token per replayed question (median; limit"
            f" {settings.canary_max_latency_ratio}x; p50 {c['ms_per_token_p50']} vs {lv['ms_per_token_p50']})"
        )
    return worse


def verdict(
    canary: Health, live: Health, evidence: dict[str, Any] | None, elapsed_s: float, settings: Settings
) -> tuple[bool, str] | None:
    """None: keep watching. (True, why): promote. (False, why): roll back."""
    allowed_errors = settings.canary_max_error_rate * settings.canary_requests
    if canary.errors > allowed_errors:  # more failures than the whole window may have: no need to wait for it
        return False, f"{canary.errors} errors in {canary.requests} canary answers"
    if evidence is not None and (worse := judge(evidence, settings)):
        return False, "shadow replay: " + "; ".join(worse)
    if settings.canary_shadow and evidence is None:
        return None  # the replay has not finished: quality is not known yet
    replayed = evidence["n"] if evidence else 0
    answers = canary.requests + replayed
    if answers < settings.canary_min_answers:
        return None  # never promoted on too little evidence, however long it has been up
    if answers < settings.canary_requests and elapsed_s < settings.canary_seconds:
        return None
    if canary.error_rate > settings.canary_max_error_rate:
        return False, f"error rate {canary.error_rate:.1%} > {settings.canary_max_error_rate:.1%}"
    if canary.ms_per_token_p50 is not None and live.ms_per_token_p50 is not None:
        limit = live.ms_per_token_p50 * settings.canary_max_latency_ratio
        if canary.ms_per_token_p50 > limit:
            return False, f"p50 {canary.ms_per_token_p50:.1f} ms/token > {limit:.1f} (live × ratio)"
    why = f"{canary.requests} answers, error rate {canary.error_rate:.1%}"
    if evidence is not None:
        c, lv = evidence["canary"], evidence["live"]
        why += (
            f"; {replayed} replayed: char-F1 {c['char_f1']} vs live {lv['char_f1']}, hand-off {c['handoff_rate']:.0%}"
            f" vs {lv['handoff_rate']:.0%}, corrections honoured {c['corrections_honoured']}"
        )
    return True, why
