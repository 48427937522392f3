"""`kefu demo`'s attach step (归入已有条目): a customer's wording the engine missed is attached by an agent to the FAQ
entry it asks about; approved, it is served right within seconds (retrieval finds the entry, the engine generates the
answer) and it goes into the next dataset version with the demo's correction, so one retraining learns both.

The question is the demo set's first in-scope miss that is a wording problem: handed off, or answered over another
entry (a wrong answer over the right entry needs a correction, not a wording). When there is none, the set's first
in-scope question is attached instead: the step still runs, with nothing to fix.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from kefu.questions import answered_right, ask_all, read_questions
from kefu.registry import service_settings
from libs.common.artifacts import ArtifactStore
from libs.common.knowledge import Entry, load_knowledge
from libs.datasets.cleaning import normalize_text

LIVE_FIX_TIMEOUT_S = 20


async def until_served(question: str, ok: Callable[[dict], bool], key: str, since: float) -> tuple[float | None, dict]:
    """Seconds from ``since`` until the gateway's answer to ``question`` passes ``ok`` (None: not within
    LIVE_FIX_TIMEOUT_S), and the last answer (with the gateway's ``kefu`` fields)."""
    gateway = service_settings("gateway")
    http, model = gateway.endpoints()["http"] + "/v1", gateway.triton_model_name
    answer: dict = {}
    while time.monotonic() - since < LIVE_FIX_TIMEOUT_S:
        (answer,) = await ask_all(http, key, model, [{"question": question}])
        if ok(answer):
            return time.monotonic() - since, answer
        await asyncio.sleep(0.25)
    return None, answer


def candidates(wrong: list[dict], first: dict | None, entries: dict[str, Entry]) -> list[tuple[bool, dict, Entry]]:
    """(missed, question row, its entry) to try in order: the wording misses, then ``first`` (nothing to fix).
    ``entries`` maps a normalized FAQ question to its entry."""
    out = []
    for missed, row in [*((True, w) for w in wrong), *([(False, first)] if first else [])]:
        entry = entries.get(normalize_text(row["faq_question"]))
        if entry is None:
            continue
        if missed and not row.get("handoff") and row.get("entry_ids", [])[:1] == [entry.entry_id]:
            continue  # answered over its own entry: the answer is wrong, not the wording
        out.append((missed, row, entry))
    return out


async def attach_missed(
    question_set: Path, wrong: list[dict], dataset_id: str, keys: dict[str, str], say: Callable[[str], None]
) -> dict[str, Any]:
    """Attach the first missed question to its entry through the feedback API; how soon it is answered right."""
    gateway = service_settings("gateway")
    knowledge = load_knowledge(ArtifactStore(gateway.home).path("datasets", dataset_id))
    first = next((q for q in read_questions(question_set) if q.get("faq_question")), None)
    for missed, pick, entry in candidates(wrong, first, {normalize_text(e.question): e for e in knowledge}):
        if "answer_id" not in pick:  # the fallback: asked now, for an answer to flag
            http = gateway.endpoints()["http"] + "/v1"
            (answer,) = await ask_all(http, keys["app"], gateway.triton_model_name, [pick])
            pick = {**pick, "answer_id": answer["answer_id"]}
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(20):  # the gateway logs an answer just after it streams it: a fresh one may 404 briefly
                resp = await client.post(
                    service_settings("feedback").endpoints()["http"] + "/v1/flags",
                    headers={"Authorization": f"Bearer {keys['agent']}"},
                    json={"answer_id": pick["answer_id"], "reason": "同一问题，换了说法", "similar_to": entry.entry_id},
                )
                if resp.status_code != 404 or "answer_not_found" not in resp.text:
                    break
                await asyncio.sleep(0.25)
        if resp.status_code >= 400:  # e.g. the wording is another entry's: one wording, one answer
            say(f"demo: could not attach {pick['question']!r}: {resp.text}")
            continue
        say(f"demo: agent attached {pick['question']!r} to the entry {entry.question!r} (归入已有条目)")
        right = answered_right(pick.get("facts", []))
        seconds, answer = await until_served(pick["question"], right, keys["app"], started)
        if seconds is None:
            say(f"demo: not answered right {LIVE_FIX_TIMEOUT_S}s after approval: {answer.get('answer')!r}")
        else:
            say(f"demo: attached question answered right {seconds:.1f}s after approval (generated, no retraining)")
        return {
            "attach": {
                "question": pick["question"],
                "entry": entry.question,
                "missed_before": missed,
                "facts": pick.get("facts", []),
                "seconds": round(seconds, 1) if seconds is not None else None,
            }
        }
    say(f"demo: attach step skipped: no in-scope question of {question_set.name} could be attached to its entry")
    return {}


async def attached_after_retraining(attach: dict[str, Any], key: str) -> bool | None:
    """Whether the retrained engine answers the attached question right (None: nothing was attached)."""
    if not attach:
        return None
    seconds, _ = await until_served(attach["question"], answered_right(attach["facts"]), key, time.monotonic())
    return seconds is not None
