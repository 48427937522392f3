"""Gateway handlers: ``engine.built`` (gate passed) → live or canary deployment → ``deployment.live``.

An ``engine.built`` that the builder's engine record does not back (unknown engine, another model or Triton
version, a failed gate) is never deployed: ``deploy_engine`` raises ``UntrustedEngine``, a ``PoisonMessage``, so the
consumer dead-letters it at once with the reason (``kefu dlq list engine.built``).
"""

from __future__ import annotations

import logging
import uuid

from libs.common.broker import consumer_options
from libs.common.events import EngineBuilt, KnowledgeUpdated, Topic
from libs.common.outbox import claim_event
from services.gateway.core import Gateway
from services.gateway.rollout import deploy_engine

log = logging.getLogger("kefu.gateway")


def register(gw: Gateway) -> None:
    rt = gw.runtime

    @rt.broker.subscriber(Topic.ENGINE_BUILT.value, **consumer_options(rt.settings, group="gateway"))
    async def on_engine_built(event: EngineBuilt) -> None:
        async with rt.sessions() as session, session.begin():
            if not await claim_event(session, "gateway", event.event_id):
                return
            state = await deploy_engine(session, event, gw.settings)
        if state:
            rt.kick_outbox()
            await gw.router.refresh()

    # Every replica must see every update, so each process reads with a group of its own, from now on (what came
    # before is in knowledge_updates, which ``refresh`` reads). The event only wakes the refresh: the table is the
    # record, so replicas apply updates in one order whatever the delivery order.
    options = {**consumer_options(rt.settings, group=f"gateway-knowledge-{uuid.uuid4().hex[:8]}")}
    options["auto_offset_reset"] = "latest"

    @rt.broker.subscriber(Topic.KNOWLEDGE_UPDATED.value, **options)
    async def on_knowledge_updated(event: KnowledgeUpdated) -> None:
        applied = await gw.knowledge.refresh()
        log.info("knowledge.updated %s (%s): %d update(s) applied", event.entry_id, event.action, applied)
