"""The gateway deploys an ``engine.built`` only when the builder's engine record backs it (PostgreSQL): unknown
engine, a mismatching model / Triton model / version, or a record that failed its gate → not deployed, and the
consumer dead-letters the event with the reason (``UntrustedEngine`` is poison)."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import select

from libs.common.broker import classify
from libs.common.tables import Deployment, Engine
from services.gateway.rollout import UntrustedEngine, deploy_engine
from services.gateway.settings import Settings

from .conftest import engine_event


def _record(event, **overrides) -> Engine:  # type: ignore[no-untyped-def]
    values = {
        "engine_id": event.engine_id, "model_id": event.model_id, "dataset_id": event.dataset_id,
        "triton_model": event.triton_model, "triton_version": event.triton_version, "precision": "fp32",
        "quality": {}, "passed_gate": True, "uri": "file:///nonexistent", **overrides,
    }  # fmt: skip
    return Engine(**values)


async def _deploy(db_sessions, event, record: Engine | None) -> str | None:  # type: ignore[no-untyped-def]
    """deploy_engine in a transaction that is always rolled back: other suites share this database."""
    async with db_sessions() as session:
        await session.begin()
        try:
            if record is not None:
                session.add(record)
                await session.flush()
            state = await deploy_engine(session, event, Settings(_env_file=None))
            rows = (await session.scalars(select(Deployment).where(Deployment.engine_id == event.engine_id))).all()
            assert len(rows) == (1 if state else 0)
            return state
        finally:
            await session.rollback()


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (None, "has no engine record"),
        ({"triton_version": 7}, "triton_version 2 (record: 7)"),
        ({"triton_model": "other-model"}, "triton_model 'kefu-chat' (record: 'other-model')"),
        ({"model_id": "m-other"}, "model_id"),
        ({"passed_gate": False}, "did not pass its quality gate according to its record"),
    ],
)
async def test_events_the_record_does_not_back_are_refused(db_sessions, overrides: dict | None, reason: str) -> None:
    event = engine_event(f"e-untrusted-{uuid.uuid4().hex[:8]}", "kefu-chat", 2)
    record = None if overrides is None else _record(event, **overrides)
    with pytest.raises(UntrustedEngine, match=re.escape(reason)) as caught:
        await _deploy(db_sessions, event, record)
    assert classify(caught.value) == "poison"  # dead-lettered at once, with the reason, not retried


async def test_an_event_matching_its_record_is_deployed(db_sessions) -> None:
    event = engine_event(f"e-trusted-{uuid.uuid4().hex[:8]}", "kefu-chat", 2)
    assert await _deploy(db_sessions, event, _record(event)) in {"live", "canary"}


async def test_an_event_that_says_it_failed_the_gate_is_ignored(db_sessions) -> None:
    event = engine_event(f"e-failed-{uuid.uuid4().hex[:8]}", "kefu-chat", 2).model_copy(update={"passed_gate": False})
    assert await _deploy(db_sessions, event, None) is None
