"""What one gateway process shares between its HTTP and gRPC APIs (built once in the lifespan)."""

from __future__ import annotations

from dataclasses import dataclass

import tritonclient.grpc.aio as aioclient

from libs.common.runtime import ServiceRuntime
from services.gateway.access import Access
from services.gateway.answering import Answerer, AnswerLog
from services.gateway.knowledge import Knowledge
from services.gateway.ratelimit import make_limiter
from services.gateway.routing import Router
from services.gateway.settings import Settings
from services.gateway.shadow import ShadowReplay


@dataclass
class Gateway:
    settings: Settings
    runtime: ServiceRuntime[Settings]
    triton: aioclient.InferenceServerClient
    access: Access
    router: Router
    answer_log: AnswerLog
    knowledge: Knowledge
    answerer: Answerer
    shadow: ShadowReplay

    @classmethod
    def build(cls, runtime: ServiceRuntime[Settings], settings: Settings) -> Gateway:
        triton = aioclient.InferenceServerClient(settings.triton_grpc_url)
        router = Router(runtime.sessions, settings)
        answer_log = AnswerLog(runtime.sessions)
        access = Access(
            runtime.sessions,
            default_rate_per_minute=settings.gateway_rate_limit_per_minute,
            cache_seconds=settings.gateway_key_cache_seconds,
            limiter=make_limiter(settings.redis_url, timeout=settings.gateway_redis_timeout_seconds),
        )
        knowledge = Knowledge(
            runtime.sessions, runtime.artifacts, settings.gateway_min_follow_rate, settings.gateway_answer_check
        )
        answerer = Answerer(triton, router, answer_log, settings, knowledge)
        shadow = ShadowReplay(runtime.sessions, runtime.artifacts, triton, router, knowledge, settings)
        return cls(settings, runtime, triton, access, router, answer_log, knowledge, answerer, shadow)

    async def is_ready(self, model: str, version: int) -> bool:
        """Whether Triton serves ``model`` version ``version`` now (False if Triton is unreachable)."""
        try:
            return bool(await self.triton.is_model_ready(model, str(version)))
        except Exception:  # noqa: BLE001 - unreachable or unknown model: not ready, which is the answer
            return False
