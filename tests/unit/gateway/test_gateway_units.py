"""Pure parts of the gateway: key format and parsing, the canary verdict, length statistics,
the OpenAI request's question, routing shares and error mapping (rate limits: test_ratelimit.py)."""

from __future__ import annotations

import grpc
import pytest

from libs.common import apikeys
from services.gateway.errors import GatewayError, rate_limited, unauthenticated
from services.gateway.openai_api import ChatCompletionRequest
from services.gateway.routing import Router, Target
from services.gateway.settings import Settings
from services.gateway.stats import histogram, percentile, suggest_max_length, summarize

SETTINGS = Settings(canary_requests=10, canary_seconds=60, canary_max_error_rate=0.1, canary_max_latency_ratio=1.5)


@pytest.mark.parametrize(
    ("header", "key"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None), (None, None), ("", None)],
)
def test_bearer(header: str | None, key: str | None) -> None:
    assert apikeys.bearer(header) == key


def test_key_hash_is_sha256_and_never_the_key() -> None:
    digest = apikeys.hash_key("kefu_k1_secret")
    assert len(digest) == 64 and "secret" not in digest and digest == apikeys.hash_key("kefu_k1_secret")


def test_length_statistics() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile([], 50) == 0
    assert histogram([1, 16, 17, 10_000]) == {**histogram([]), "le_16": 2, "le_32": 1, "le_inf": 1}
    assert summarize(values)["p95"] == 95 and summarize(values)["max"] == 100
    assert suggest_max_length(1) == 64 and suggest_max_length(65) == 128 and suggest_max_length(128) == 128


def test_question_is_the_last_user_message_text_parts_joined() -> None:
    request = ChatCompletionRequest.model_validate(
        {
            "model": "kefu-chat",
            "temperature": 0.3,
            "messages": [
                {"role": "system", "content": "you are"},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "如何"}, {"type": "text", "text": "退款"}]},
            ],
        }
    )
    assert request.question() == "如何退款"
    with pytest.raises(GatewayError) as info:
        ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [{"role": "system", "content": "x"}]}
        ).question()
    assert info.value.status == 400


def test_router_sends_the_canary_its_share() -> None:
    router = Router(sessions=None, settings=SETTINGS)  # type: ignore[arg-type]
    with pytest.raises(GatewayError) as info:
        router.pick()
    assert info.value.status == 503
    router.live = Target("live", "m", "d", "kefu-chat", 1, "live")
    router.canary, router.canary_percent = Target("new", "m2", "d", "kefu-chat", 2, "canary"), 25.0
    picks = [router.pick().engine_id for _ in range(4000)]
    assert 0.2 < picks.count("new") / len(picks) < 0.3
    assert router.models() == ["kefu-chat"]


def test_errors_map_to_grpc_codes() -> None:
    assert unauthenticated().grpc_code == grpc.StatusCode.UNAUTHENTICATED
    limited = rate_limited(0.2)
    assert (limited.status, limited.grpc_code, limited.headers) == (
        429,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        {"Retry-After": "1"},
    )
    assert GatewayError(503, "unavailable", "x").grpc_code == grpc.StatusCode.UNAVAILABLE
