"""Gateway handlers: ``engine.built`` (gate passed) → live or canary deployment → ``deployment.live``."""

from __future__ import annotations

import logging

from libs.common.broker import consumer_options
from libs.common.events import EngineBuilt, Topic
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
