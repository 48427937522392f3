"""The knowledge each engine answers from: its dataset's knowledge base plus every approved live update.

An engine is served with the retrieval settings it was trained and gated with (``retrieval`` in its manifest: k and
the hand-off threshold), over the knowledge base of ITS dataset version — canary and live may differ. Approved
corrections (``knowledge_updates``, written by feedback) are applied on top, in order, to every engine's base: the
``knowledge.updated`` event wakes ``refresh`` at once, and the routing loop calls it every second as a backstop, so
a correction is served within about a second of approval, before any retraining.

An engine answers an updated entry through its model only when it was measured to follow its references (the
trainer's hot-fix follow rate, in the manifest, at least ``follow_bar``). One that was not — the tiny offline base
answers an edited reference with another entry's text, worse than its old answer — serves the approved text of the
entries changed since its dataset as is (``Grounded.verbatim``), until a retrained engine has learnt them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.answer_check import OPENING_BIGRAMS
from libs.common.artifacts import ENGINE_META, ArtifactStore
from libs.common.knowledge import Entry, load_knowledge
from libs.common.prompting import grounded_context
from libs.common.retrieval import PARAMS, Retrieval, Retriever
from libs.common.tables import Engine, KnowledgeUpdate
from services.gateway import metrics
from services.gateway.routing import Target

log = logging.getLogger("kefu.gateway.knowledge")


@dataclass(frozen=True)
class Grounded:
    """What retrieval decided for one question: the references to prompt with, or a hand-off."""

    entry_ids: list[str]
    scores: list[float]
    confidence: float | None
    handoff: bool
    context: str  # the references block for the engine's ``context`` input ("" when none)
    verbatim: str | None = None  # the approved text to serve as is (an update the engine cannot follow), or None
    #: Why a hand-off had confidence 0: the kinds of fact asked that the best entry never speaks of (price, …).
    unspoken: tuple[str, ...] = ()


@dataclass(frozen=True)
class Grounding:
    retriever: Retriever
    k: int
    threshold: float | None  # None: the engine was trained without references: no retrieval, no hand-off
    #: Entries changed by approved updates since the engine's dataset, when the engine does not follow references.
    as_is: frozenset[str] = frozenset()
    #: An answer whose opening is less supported by its references is handed off (``libs.common.answer_check``);
    #: the engine's calibrated bar, 0 for none (engines trained before it, or a gateway with the check off).
    min_support: float = 0.0
    opening_bigrams: int = OPENING_BIGRAMS  # as the engine's bar was calibrated

    def verbatim(self, top: Entry | None, handoff: bool) -> str | None:
        """The approved text to serve instead of the engine's answer when ``top`` (the best reference) is an update
        this engine cannot follow; None: the engine answers."""
        return top.answer if top is not None and not handoff and top.entry_id in self.as_is else None

    def search(self, question: str) -> Retrieval | None:
        return self.retriever.search(question, self.k) if self.threshold is not None else None

    def ground(self, question: str) -> Grounded:
        """Retrieve for ``question`` as the engine was trained: references, or a hand-off below the threshold."""
        started = time.perf_counter()
        found = self.search(question)
        metrics.RETRIEVAL_SECONDS.observe(time.perf_counter() - started)
        if found is None:
            return Grounded([], [], None, False, "")
        handoff = found.confidence < (self.threshold or 0.0)
        return Grounded(
            entry_ids=[h.entry.entry_id for h in found.hits],
            scores=[round(h.score, 4) for h in found.hits],
            confidence=round(found.confidence, 4),
            handoff=handoff,
            context=grounded_context("", [(h.entry.question, h.entry.answer) for h in found.hits]),
            verbatim=self.verbatim(found.hits[0].entry if found.hits else None, handoff),
            unspoken=found.unspoken if handoff else (),  # a bar of 0 answers even these
        )


class Knowledge:
    def __init__(
        self, sessions: async_sessionmaker, artifacts: ArtifactStore, follow_bar: float, answer_check: bool = True
    ) -> None:
        """``follow_bar``: the gateway's ``gateway_min_follow_rate``; ``answer_check``: its ``gateway_answer_check``."""
        self.sessions, self.artifacts, self.follow_bar = sessions, artifacts, follow_bar
        self.answer_check = answer_check
        self._manifests: dict[str, tuple[str, dict[str, Any] | None]] = {}  # engine → (dataset, retrieval)
        self._bases: dict[str, Retriever] = {}  # dataset → its knowledge base, indexed once
        self._grounding: dict[str, Grounding] = {}
        self._updates: list[tuple[str, Entry]] = []  # (action, entry), in approval order
        self.last_update_id = 0
        self._lock = asyncio.Lock()

    async def for_target(self, target: Target) -> Grounding:
        found = self._grounding.get(target.engine_id)
        if found is not None:
            return found
        async with self._lock:
            if target.engine_id not in self._grounding:
                if await self._load_updates():  # engines already served must see them too, not only this one
                    self._grounding = {engine: self._build(engine) for engine in self._grounding}
                retrieval = await engine_retrieval(self.sessions, self.artifacts, target.engine_id)
                if changed := index_changes(retrieval):
                    # Served all the same (the old tables are not kept), but its references and hand-off threshold
                    # were measured with the recorded index: an operator should know to retrain it.
                    log.warning("engine %s was trained with other retrieval settings (%s); retrain it to serve it "
                                "with this version's", target.engine_id, changed)  # fmt: skip
                self._manifests[target.engine_id] = (target.dataset_id, retrieval)
                if retrieval is not None and target.dataset_id not in self._bases:
                    self._bases[target.dataset_id] = await asyncio.to_thread(self._index, target.dataset_id)
                self._grounding[target.engine_id] = self._build(target.engine_id)
            return self._grounding[target.engine_id]

    async def refresh(self) -> int:
        """Apply approved updates newer than the last seen; returns how many. Cheap when there are none."""
        async with self._lock:
            new = await self._load_updates()
            if new:
                # Cheap: each engine's base index is shared, only the overlay of updates is new.
                self._grounding = {engine: self._build(engine) for engine in self._grounding}
                log.info("applied %d knowledge update(s) to %d engine(s)", new, len(self._grounding))
            return new

    async def run(self, poll_seconds: float) -> None:
        """Forever: pick up updates whose event this replica missed (down, or the broker was)."""
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("knowledge refresh failed; serving the last knowledge")
            await asyncio.sleep(poll_seconds)

    async def _load_updates(self) -> int:
        async with self.sessions() as session:
            rows = (
                await session.scalars(
                    select(KnowledgeUpdate).where(KnowledgeUpdate.id > self.last_update_id).order_by(KnowledgeUpdate.id)
                )
            ).all()
        for row in rows:
            self._updates.append((row.action, Entry(row.entry_id, row.question, row.answer)))
            self.last_update_id = row.id
        return len(rows)

    def _index(self, dataset_id: str) -> Retriever:
        try:
            entries = load_knowledge(self.artifacts.path("datasets", dataset_id))
        except (OSError, ValueError) as exc:  # a damaged file must not fail every request: a human answers instead
            log.error("dataset %s: knowledge base unreadable (%s)", dataset_id, exc)
            entries = []
        if not entries:
            log.error("dataset %s has no knowledge base in %s: every question will be handed off", dataset_id,
                      self.artifacts.path("datasets", dataset_id))  # fmt: skip
        return Retriever(entries)

    def _build(self, engine_id: str) -> Grounding:
        dataset_id, retrieval = self._manifests[engine_id]
        if retrieval is None:  # trained without references: served as it was trained
            return Grounding(Retriever([]), 0, None)
        base = self._bases[dataset_id]
        current = base.updated(self._updates)
        as_is: frozenset[str] = frozenset()
        if (retrieval.get("hotfix_follow_rate") or 0.0) < self.follow_bar and self._updates:
            # An entry whose text changed since the engine's dataset; new similar questions alone change no text.
            trained = {e.entry_id: (e.question, e.answer) for e in base.entries}
            as_is = frozenset(e.entry_id for e in current.entries if trained.get(e.entry_id) != (e.question, e.answer))
        min_support, bigrams = answer_check_of(engine_id, retrieval) if self.answer_check else (0.0, OPENING_BIGRAMS)
        threshold = float(retrieval["handoff_threshold"])
        return Grounding(current, int(retrieval["k"]), threshold, as_is, min_support, bigrams)


def answer_check_of(engine_id: str, retrieval: dict) -> tuple[float, int]:
    """(bar, opening size) from an engine's ``retrieval["answer_check"]``; (0, default): no check, when absent or
    unreadable — a damaged optional record must not fail every answer of the engine, so it is logged and skipped."""
    check = retrieval.get("answer_check") or {}
    try:
        bar = min(1.0, max(0.0, float(check.get("min_support") or 0.0)))
        bigrams = int(check.get("opening_bigrams") or OPENING_BIGRAMS)
        if bigrams < 1:
            raise ValueError(f"opening_bigrams must be ≥ 1, got {bigrams}")
    except (TypeError, ValueError, AttributeError) as exc:
        log.error("engine %s: unreadable answer_check %r in its manifest (%s); serving it unchecked", engine_id,
                  check, exc)  # fmt: skip
        return 0.0, OPENING_BIGRAMS
    return bar, bigrams


def index_changes(retrieval: dict | None) -> str:
    """What differs between the index an engine was trained with (``retrieval["index"]``) and this version's
    (``libs.common.retrieval.PARAMS``), e.g. ``synonyms 46 → 137``; a setting the record lacks (added since) shows
    as ``—``; "" when they agree or nothing was recorded."""
    recorded = (retrieval or {}).get("index") or {}
    if not recorded:
        return ""
    return ", ".join(
        f"{key} {recorded.get(key, '—')} → {value}" for key, value in PARAMS.items() if recorded.get(key) != value
    )


async def engine_retrieval(sessions: async_sessionmaker, artifacts: ArtifactStore, engine_id: str) -> dict | None:
    """The ``retrieval`` section of an engine's manifest (None: ungrounded engine or manifest not readable)."""
    async with sessions() as session:
        uri = await session.scalar(select(Engine.uri).where(Engine.engine_id == engine_id))
    if uri is None:
        return None
    try:
        meta = json.loads((artifacts.resolve_uri(uri) / ENGINE_META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("engine %s: cannot read its manifest (%s); serving it without retrieval", engine_id, exc)
        return None
    return meta.get("retrieval")
