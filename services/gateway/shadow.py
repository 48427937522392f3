"""Shadow replay: while a canary is up, the same questions go to the canary and to the live engine, off the customer
path, and the comparison is stored on the canary's deployment as its evidence (``canary.compare``).

The questions: every approved correction behind the canary's dataset (``regression.jsonl``, answered as approved?),
held-out FAQ rows of its eval split (gold answers), and recent customer questions from the answer log, PII-redacted;
a recent question is judged against the approved answer only where both engines' knowledge bases agree on it
(the question is unchanged between them), else on hand-off, errors and speed alone. Each engine is asked as the
gateway would ask it: its own knowledge base, k and hand-off threshold. Replies are not logged as answers and are
never shown to anyone.

Every replica may replay a canary once; the first stored evidence stands (the row lock keeps the others' out).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import tritonclient.grpc.aio as aioclient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.artifacts import ArtifactStore
from libs.common.tables import Answer, Deployment, utcnow
from libs.common.triton_stream import stream_answer
from libs.datasets.cleaning import redact_customer_text
from services.gateway.canary import Probe, Reply, compare
from services.gateway.knowledge import Grounding, Knowledge
from services.gateway.routing import Router, Target
from services.gateway.settings import Settings

log = logging.getLogger("kefu.gateway.shadow")
WARM_UP = 3  # questions asked of both engines, unmeasured, before the replay


def _rows(path: Path, limit: int | None) -> list[tuple[str, str]]:
    """(question, answer) of a dataset split file; a missing file is no rows."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out.append((row["instruction"], row["output"]))
    return out if limit is None else out[:limit]


def _agreed_answer(question: str, canary: Grounding, live: Grounding) -> str | None:
    """The approved answer both engines' knowledge bases give ``question``; None if they differ or either is unsure."""
    found = [g.search(question) for g in (canary, live)]
    if any(f is None or not f.hits for f in found):
        return None
    (c, lv), (cg, lg) = found, (canary, live)
    if c.confidence < (cg.threshold or 0.0) or lv.confidence < (lg.threshold or 0.0):
        return None
    answer = c.hits[0].entry.answer
    return answer if lv.hits[0].entry.answer == answer else None


class ShadowReplay:
    def __init__(
        self,
        sessions: async_sessionmaker,
        artifacts: ArtifactStore,
        client: aioclient.InferenceServerClient,
        router: Router,
        knowledge: Knowledge,
        settings: Settings,
    ) -> None:
        self.sessions, self.artifacts, self.client = sessions, artifacts, client
        self.router, self.knowledge, self.settings = router, knowledge, settings
        self._replayed: set[str] = set()  # canary engine ids this process has evidence for

    async def run(self) -> None:
        """Forever: replay each new canary once, as soon as there is one next to a live engine."""
        while True:
            canary, live = self.router.canary, self.router.live
            if self.settings.canary_shadow and canary and live and canary.engine_id not in self._replayed:
                try:
                    await self.replay(canary, live)
                    self._replayed.add(canary.engine_id)
                except Exception:
                    log.exception("shadow replay of canary %s failed; trying again", canary.engine_id)
            await asyncio.sleep(self.settings.rollout_poll_seconds)

    async def replay(self, canary: Target, live: Target) -> dict | None:
        """Replay the probes to both engines and store the evidence; None if the canary already has some."""
        if await self._evidence(canary.engine_id) is not None:
            return None
        c_ground, l_ground = await self.knowledge.for_target(canary), await self.knowledge.for_target(live)
        probes = await self.probes(canary, c_ground, l_ground)
        started = time.perf_counter()
        # A freshly loaded engine is slower on its first answers (allocations, thread pools warming up): measured
        # cold, a copy of the live engine's weights read ~1.7x slower per token. Customers never see that state.
        for probe in probes[:WARM_UP]:
            await self.ask(canary, c_ground, probe)
            await self.ask(live, l_ground, probe)
        gate = asyncio.Semaphore(self.settings.canary_shadow_concurrency)

        async def both(i: int, probe: Probe) -> tuple[Reply, Reply]:
            # One question to both engines back to back, which goes first alternating: at any moment about as many
            # replayed questions run on each engine, so their speeds are measured under the same load.
            async with gate:
                if i % 2:
                    live_reply = await self.ask(live, l_ground, probe)
                    return await self.ask(canary, c_ground, probe), live_reply
                return await self.ask(canary, c_ground, probe), await self.ask(live, l_ground, probe)

        replies = await asyncio.gather(*(both(i, p) for i, p in enumerate(probes)))
        evidence = compare(probes, [c for c, _ in replies], [lv for _, lv in replies])
        evidence.update(live_engine_id=live.engine_id, at=utcnow().isoformat(),
                        seconds=round(time.perf_counter() - started, 2))  # fmt: skip
        stored = await self._store(canary.engine_id, evidence)
        log.info(
            "shadow replay of canary %s vs %s: %d questions, canary %s, live %s%s",
            canary.engine_id, live.engine_id, len(probes), evidence["canary"], evidence["live"],
            "" if stored else " (another replica's evidence was stored first)",
        )  # fmt: skip
        return evidence

    async def probes(self, canary: Target, c_ground: Grounding, l_ground: Grounding) -> list[Probe]:
        dataset = self.artifacts.path("datasets", canary.dataset_id)
        regression = [Probe(q, a, "regression") for q, a in _rows(dataset / "regression.jsonl", None)]
        held = [Probe(q, a, "eval") for q, a in _rows(dataset / "eval.jsonl", self.settings.canary_shadow_eval)]
        seen = {p.question for p in regression + held}
        recent = []
        for question in await self._recent_questions():
            if question not in seen:
                seen.add(question)
                recent.append(Probe(question, _agreed_answer(question, c_ground, l_ground), "recent"))
        return regression + held + recent[: self.settings.canary_shadow_recent]

    async def _recent_questions(self) -> list[str]:
        """Latest distinct customer questions, PII-redacted (an unmasked number never reaches an engine again)."""
        if not self.settings.canary_shadow_recent:
            return []
        async with self.sessions() as session:
            rows = await session.scalars(
                select(Answer.question)
                .where(Answer.status == "ok")
                .order_by(Answer.created_at.desc())
                .limit(self.settings.canary_shadow_recent * 5)
            )
            return list(dict.fromkeys(redact_customer_text(q) for q in rows))

    async def ask(self, target: Target, grounding: Grounding, probe: Probe) -> Reply:
        grounded = grounding.ground(probe.question)
        if grounded.handoff:
            return Reply("", handoff=True)
        started, parts, tokens = time.perf_counter(), [], 0
        try:
            async for delta in stream_answer(
                self.client,
                target.triton_model,
                probe.question,
                max_tokens=self.settings.canary_shadow_max_tokens,
                version=str(target.triton_version),
                context=grounded.context,
            ):
                parts.append(delta.text)
                tokens = delta.token_count
        except Exception as exc:  # noqa: BLE001 - an engine failing on a question is evidence, not a crash
            return Reply("", error=f"{type(exc).__name__}: {exc}"[:300])
        return Reply("".join(parts), ms_per_token=(time.perf_counter() - started) * 1000 / max(tokens, 1))

    async def _evidence(self, engine_id: str) -> dict | None:
        async with self.sessions() as session:
            return await session.scalar(
                select(Deployment.evidence).where(Deployment.engine_id == engine_id, Deployment.state == "canary")
            )

    async def _store(self, engine_id: str, evidence: dict) -> bool:
        async with self.sessions() as session, session.begin():
            stmt = select(Deployment).where(Deployment.engine_id == engine_id, Deployment.state == "canary")
            if session.bind.dialect.name == "postgresql":
                stmt = stmt.with_for_update()
            dep = await session.scalar(stmt.order_by(Deployment.id.desc()).limit(1))
            if dep is None or dep.evidence is not None:
                return False
            dep.evidence = evidence
            return True
