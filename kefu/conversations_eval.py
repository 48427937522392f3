"""Two-turn conversations through the running gateway: the share of follow-ups ANSWERED right, for `kefu demo`.

A conversation set is JSONL: ``{"turns": [{"question", "faq_question"}, {"question", "faq_question", "facts"}]}``;
the second turn means nothing alone ("要多久能开好？" after "发票怎么开？"). Each conversation is asked as a
customer app would ask it, through the OpenAI-compatible API: the first question, then the follow-up with the first
question and the answer it got as earlier messages, under one conversation id. A follow-up is right when it was not
handed off and its answer holds every fact: the rule of the single-turn paraphrase figure (``kefu.questions``), so
the two figures stand side by side. The follow-up asked alone is reported too: what the conversation adds.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from kefu.questions import ask_all

SAMPLE_CONVERSATIONS = Path(__file__).resolve().parent.parent / "data" / "sample" / "cloudmax_conversations.jsonl"


def read_conversations(path: Path) -> list[list[dict[str, Any]]]:
    """Each conversation's turns; the last turn needs ``question`` and ``facts`` (what a right answer holds)."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            turns = json.loads(line).get("turns") or []
            if len(turns) < 2 or not all(t.get("question") for t in turns) or not turns[-1].get("facts"):
                raise ValueError(f"{path}:{n}: a conversation needs ≥ 2 turns with questions, the last with facts")
            out.append(turns)
    return out


async def ask_conversations(
    base_url: str, key: str, model: str, conversations: list[list[dict]], concurrency: int = 4
) -> list[dict[str, Any]]:
    """The last turn's answer (text + ``kefu`` grounding fields) of each conversation, asked turn by turn."""
    limit = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, turns: list[dict]) -> dict[str, Any]:
        messages: list[dict[str, str]] = []
        cid = f"eval-{uuid.uuid4().hex[:12]}"
        body: dict[str, Any] = {}
        async with limit:
            for turn in turns:
                messages.append({"role": "user", "content": turn["question"]})
                r = await client.post(
                    f"{base_url}/chat/completions",
                    headers={"Authorization": f"Bearer {key}"},
                    json={"model": model, "messages": messages, "metadata": {"conversation_id": cid}},
                )
                r.raise_for_status()
                body = r.json()
                messages.append({"role": "assistant", "content": body["choices"][0]["message"]["content"]})
        answer = body["choices"][0]["message"]["content"]
        return {"answer": answer, "answer_id": body["id"], "conversation_id": cid, **body.get("kefu", {})}

    async with httpx.AsyncClient(timeout=120) as client:
        return await asyncio.gather(*(one(client, turns) for turns in conversations))


def right(turn: dict[str, Any], answer: dict[str, Any]) -> bool:
    return not answer.get("handoff") and all(f in answer["answer"] for f in turn.get("facts", []))


def score_conversations(
    conversations: list[list[dict]], in_context: list[dict], alone: list[dict] | None = None
) -> dict[str, Any]:
    """Follow-ups answered right with their conversation (and, when given, asked alone)."""
    last = [turns[-1] for turns in conversations]

    def share(flags: list[bool]) -> float | None:
        return round(sum(flags) / len(flags), 3) if flags else None

    ok = [right(t, a) for t, a in zip(last, in_context, strict=True)]
    out: dict[str, Any] = {
        "conversations": len(conversations),
        "two_turn_accuracy": share(ok),
        "two_turn_handoff": share([bool(a.get("handoff")) for a in in_context]),
        "wrong": [
            {"turns": [t["question"] for t in turns], "answer": a["answer"], "facts": turns[-1]["facts"]}
            for turns, a, good in zip(conversations, in_context, ok, strict=True)
            if not good
        ][:10],
    }
    if alone is not None:
        out["followup_alone_accuracy"] = share([right(t, a) for t, a in zip(last, alone, strict=True)])
    return out


async def evaluate(base_url: str, key: str, model: str, path: Path = SAMPLE_CONVERSATIONS) -> dict[str, Any]:
    """Ask and score one conversation set: with context, and each follow-up alone (the baseline)."""
    conversations = read_conversations(path)
    in_context = await ask_conversations(base_url, key, model, conversations)
    alone = await ask_all(base_url, key, model, [turns[-1] for turns in conversations])
    return score_conversations(conversations, in_context, alone)


async def demo_figures(base_url: str, key: str, model: str, say) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """What `kefu demo` adds to its summary: the two-turn figure beside the single-turn paraphrase figure."""
    result = await evaluate(base_url, key, model)
    say(
        f"demo: {SAMPLE_CONVERSATIONS.name}: {result['conversations']} follow-ups answered right "
        f"{result['two_turn_accuracy']} with their conversation, {result['followup_alone_accuracy']} asked alone"
    )
    return {
        "two_turn": result,
        "two_turn_accuracy": result["two_turn_accuracy"],
        "followup_alone_accuracy": result["followup_alone_accuracy"],
    }
