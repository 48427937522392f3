"""Conversations: the turns before the question, and how a follow-up question is retrieved with them.

Customers ask follow-ups that mean nothing alone ("怎么查账户余额？" then "快用完时能提醒我吗？"). The engine
answers one question with its references, so what a conversation changes is WHICH references it gets: ``ground``
ranks the knowledge base by the question's retrieval scores plus half the previous user turn's. Measured on
data/sample/cloudmax_conversations.jsonl (25 two-turn conversations, sample FAQ, the served hand-off threshold),
follow-ups retrieved right and not handed off: 14/25 alone, 9/25 with the two turns concatenated (the first
turn's words win), 17/25 blended, 19/25 blended within the previous turn's topic when the follow-up alone would be
handed off, 20/25 with the follow-up's own hand-off rule below; 51 self-contained questions each after an unrelated
one: 34/51 alone, 10/51 concatenated, 34/51 blended (nothing lost). Session 9 (21/25 with two synonym folds) tried
and dropped: a heavier previous turn for questions carrying little information (they are the follow-ups: median 30
bits against 66 for the demo's questions) — the previous turn's own entry then wins, 16-20/25; preferring an entry
of the previous topic whose own score is within 20-60% of the best — 17-19/25, topic switches 20-38/40; the
previous answer beside the previous question — 21/25, topic switches 38 → 40/40 (docs/benchmarks.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from libs.common.prompting import grounded_context
from services.gateway.errors import invalid
from services.gateway.knowledge import Grounded, Grounding

Role = Literal["user", "assistant"]
MAX_CONVERSATION_ID = 64
MAX_TURNS = 64
#: Weight of the previous user turn's scores. Measured (follow-ups right / topic switches right): 0.3 → 16/25,
#: 34/51; 0.5 → 17/25, 34/51; 0.7 → 17/25, 30/51.
PREVIOUS_WEIGHT = 0.5
CANDIDATES = 50
#: A follow-up that cannot stand alone is answered from the previous turn's best entries. Measured: 10 → 19/25
#: follow-ups (5 → 18/25, unrestricted 17/25); the demo's 40 paraphrases each after an unrelated question stay at
#: 34/40 either way.
TOPIC_ENTRIES = 10
#: A follow-up is answered when this share of the hand-off threshold of its own content is found in the chosen
#: entry. Measured (follow-ups right / out-of-scope questions after an in-scope turn handed off, of 60 — the demo's
#: 12 and the test fixture's 48 —; self-contained questions after an unrelated turn stay 34/40 throughout):
#: 1 → 14/25, 49/60; 1/2 → 17/25, 44/60; 1/3 → 20/25, 41/60; 1/5 → 20/25, 28/60; the joined turns' confidence
#: (before) 19/25, 33/60. With confidence weighted by information × idf (libs/common/retrieval.py) the threshold's
#: scale changed (0.26 → 0.40 on the sample FAQ): 1/2 → 20/25, 44/60; 2/3 → 19/25, 49/60; 3/4 → 19/25, 53/60;
#: 0.85 → 18/25, 53/60 (self-contained questions after an unrelated turn 38/40 throughout).
FOLLOW_UP_SHARE = 3 / 4


@dataclass(frozen=True)
class Turn:
    role: Role
    text: str


@dataclass(frozen=True)
class Conversation:
    """A question's conversation: its id (grouping in the answer log) and the turns before it, oldest first."""

    conversation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    history: tuple[Turn, ...] = ()

    @property
    def previous_question(self) -> str:
        """The last user turn before the question ("" when the question opens the conversation)."""
        for turn in reversed(self.history):
            if turn.role == "user" and turn.text.strip():
                return turn.text.strip()
        return ""


def conversation(conversation_id: str | None, history: Sequence[tuple[str, str]]) -> Conversation:
    """Validate what a client sent ((role, text) turns) into a ``Conversation``; 400 naming the field otherwise."""
    cid = (conversation_id or "").strip()
    if len(cid) > MAX_CONVERSATION_ID or any(not c.isprintable() for c in cid):
        raise invalid(f"conversation_id: at most {MAX_CONVERSATION_ID} printable characters")
    if len(history) > MAX_TURNS:
        raise invalid(f"history: at most {MAX_TURNS} earlier turns")
    turns = []
    for i, (role, text) in enumerate(history):
        if role not in ("user", "assistant"):
            raise invalid(f"history[{i}].role: must be 'user' or 'assistant', not {role!r}")
        if "\x00" in text:  # the answer log (PostgreSQL text) cannot hold it
            raise invalid(f"history[{i}].content: contains a NUL (U+0000) character")
        turns.append(Turn(role, text))  # type: ignore[arg-type]
    return Conversation(cid, tuple(turns)) if cid else Conversation(history=tuple(turns))


def blend(alone: dict[str, float], previous: dict[str, float], weight: float = PREVIOUS_WEIGHT) -> list[str]:
    """Entry ids best first by ``alone + weight * previous`` (each map: entry id → BM25 score of one text).

    Scores are divided by each text's best score first, so a long previous turn does not outweigh the question."""
    top_a, top_p = max(alone.values(), default=0.0) or 1.0, max(previous.values(), default=0.0) or 1.0
    combined = {e: alone.get(e, 0.0) / top_a + weight * previous.get(e, 0.0) / top_p for e in {*alone, *previous}}
    return sorted(combined, key=lambda e: (-combined[e], e))


def ground(grounding: Grounding, question: str, previous: str) -> Grounded:
    """Retrieve ``question``'s references with the previous user turn as a tie-breaker (``blend``).

    A follow-up ("快用完时能提醒我吗？") scores weakly and about equally on several entries alone; the previous turn
    ("怎么查账户余额？") decides between them. A self-contained question keeps its own best entry: the previous turn
    weighs half. Confidence (the hand-off decision) is the question's own when its best entry wins and clears the
    threshold; else it is a follow-up, answered when enough of its own content is in the chosen entry
    (``FOLLOW_UP_SHARE`` of the threshold)."""
    if not previous or grounding.threshold is None:
        return grounding.ground(question)
    retriever, k = grounding.retriever, grounding.k
    # The best CANDIDATES of each text are enough to blend: a whole-base ranking would cost O(entries) objects.
    pool = max(CANDIDATES, k)
    alone, before = retriever.search(question, pool), retriever.search(previous, pool)
    entries = {h.entry.entry_id: h.entry for h in (*alone.hits, *before.hits)}
    scores = {h.entry.entry_id: h.score for h in alone.hits}
    previous_scores = {h.entry.entry_id: h.score for h in before.hits}
    if alone.confidence < grounding.threshold:
        # Too little of the question stands alone (it would be handed off): a follow-up stays on the previous
        # turn's topic, so only that turn's best entries compete — its own stray words ("互相", "多久") otherwise
        # pull in an entry from another topic.
        topic = {h.entry.entry_id for h in before.hits[:TOPIC_ENTRIES]}
        scores = {e: s for e, s in scores.items() if e in topic}
        previous_scores = {e: s for e, s in previous_scores.items() if e in topic}
    ranked = blend(scores, previous_scores)[:k]
    if not ranked:
        return grounding.ground(question)
    hits = [entries[e] for e in ranked]
    own = bool(alone.hits) and alone.hits[0].entry.entry_id == ranked[0]
    if own and alone.confidence >= grounding.threshold:
        confidence, handoff = alone.confidence, False
    else:
        # A follow-up: the previous turn vouches for the topic, the question itself must still be about the chosen
        # entry — part of its own content found there. (The joined turns' confidence, used before, let the previous
        # question's words carry anything asked after it: out-of-scope questions after an in-scope turn were
        # handed off 33/60 times against 50/60 alone.)
        confidence = retriever.coverage(question, hits[0])
        handoff = confidence < grounding.threshold * FOLLOW_UP_SHARE
    return Grounded(
        entry_ids=ranked,
        scores=[round(scores.get(e, 0.0), 4) for e in ranked],
        confidence=round(confidence, 4),
        handoff=handoff,
        context=grounded_context("", [(h.question, h.answer) for h in hits]),
        verbatim=grounding.verbatim(hits[0], handoff),
        unspoken=retriever.unspoken(question, hits[0]) if handoff else (),
    )
