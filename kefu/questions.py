"""Ask a question set through the running gateway and score it: right facts, hand-offs, for `kefu demo` and tests.

A question set is JSONL: ``{"question", "faq_question", "facts"}``; ``faq_question`` null marks a question the FAQ
does not answer (it should be handed off). An in-scope answer is right when it was not handed off and contains
every fact. Asked through the OpenAI-compatible API, as a customer app would, with a few at a time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def read_questions(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            if not row.get("question"):
                raise ValueError(f"{path}:{n}: a question set row needs 'question'")
            rows.append(row)
    return rows


async def ask_all(base_url: str, key: str, model: str, questions: list[dict], concurrency: int = 4) -> list[dict]:
    """Each question's answer text and the gateway's ``kefu`` grounding fields, in question order."""
    limit = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, row: dict) -> dict:
        async with limit:
            r = await client.post(
                f"{base_url}/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": model, "messages": [{"role": "user", "content": row["question"]}]},
            )
        r.raise_for_status()
        body = r.json()
        return {"answer": body["choices"][0]["message"]["content"], "answer_id": body["id"], **body.get("kefu", {})}

    async with httpx.AsyncClient(timeout=120) as client:
        return await asyncio.gather(*(one(client, row) for row in questions))


def answered_right(facts: list[str]) -> Callable[[dict], bool]:
    """An in-scope answer is right when it was not handed off and holds every fact."""
    return lambda answer: not answer.get("handoff") and all(f in answer["answer"] for f in facts)


def score(questions: list[dict], answers: list[dict]) -> dict[str, Any]:
    """Paraphrase accuracy and hand-off rates of one question set (None where the set has no such questions)."""
    inside = [(q, a) for q, a in zip(questions, answers, strict=True) if q.get("faq_question")]
    outside = [a for q, a in zip(questions, answers, strict=True) if not q.get("faq_question")]
    right = [answered_right(q.get("facts", []))(a) for q, a in inside]

    def share(flags: list[bool]) -> float | None:
        return round(sum(flags) / len(flags), 3) if flags else None

    return {
        "in_scope": len(inside),
        "out_of_scope": len(outside),
        "paraphrase_accuracy": share(right),
        "handoff_in_scope": share([bool(a.get("handoff")) for _, a in inside]),
        "handoff_out_of_scope": share([bool(a.get("handoff")) for a in outside]),
        "wrong": [
            {
                "question": q["question"],
                "faq_question": q["faq_question"],
                "answer": a["answer"],
                "answer_id": a.get("answer_id"),
                "handoff": bool(a.get("handoff")),
                "entry_ids": a.get("entry_ids") or [],
                "facts": q.get("facts", []),
            }
            for (q, a), ok in zip(inside, right, strict=True)
            if not ok
        ][:10],
    }
