"""The canary verdict on SQLite, the embedded stack's default database: SQLite hands back naive datetimes, and the
elapsed-time check must still work (it once crashed here, so the demo's retrained engine never went live). Time
alone never promotes: the canary waits for evidence, and an operator's hold stops the verdict."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from libs.common.db import open_database
from libs.common.tables import Deployment, OutboxMessage, utcnow
from services.gateway.canary import Probe, Reply, compare
from services.gateway.rollout import evaluate_canary, hold
from services.gateway.settings import Settings

PROBES = [Probe(f"问题{i}", f"答案{i}", "eval") for i in range(25)]
REPLIES = [Reply(p.reference or "", ms_per_token=5.0) for p in PROBES]


def deployment(engine_id: str, state: str, **fields: object) -> Deployment:
    return Deployment(
        engine_id=engine_id, model_id=f"m-{engine_id}", dataset_id="ds", triton_model="kefu-chat",
        triton_version=1 if state == "live" else 2, state=state, **fields,
    )  # fmt: skip


async def test_a_canary_past_its_time_waits_for_evidence_then_is_promoted_on_sqlite(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, canary_seconds=5, canary_requests=50)
    url = settings.effective_database_url
    assert url.startswith("sqlite")
    async with open_database(settings) as sessions:
        async with sessions() as session, session.begin():
            session.add(deployment("e-old", "live"))
            session.add(
                deployment("e-new", "canary", traffic_percent=10.0, started_at=utcnow() - timedelta(seconds=60))
            )
        async with sessions() as session, session.begin():
            assert await evaluate_canary(session, settings) is None  # no traffic, no replay: no evidence
        async with sessions() as session, session.begin():
            canary = await session.scalar(select(Deployment).where(Deployment.state == "canary"))
            canary.evidence = compare(PROBES, REPLIES, REPLIES)  # what the shadow replay stores
            await hold(session, True, "looking at it")
        async with sessions() as session, session.begin():
            assert await evaluate_canary(session, settings) is None  # held: the operator decides
            await hold(session, False, "done")
        async with sessions() as session, session.begin():
            assert await evaluate_canary(session, settings) == "promoted"
        async with sessions() as session:
            states = {d.engine_id: d.state for d in (await session.scalars(select(Deployment))).all()}
            staged = (await session.scalars(select(OutboxMessage))).all()
            started = await session.scalar(select(Deployment.started_at).limit(1))
        assert states == {"e-old": "retired", "e-new": "live"}
        assert staged  # deployment.live is in the outbox
        assert started.tzinfo is not None
