"""Schemathesis on the chat path of a gateway that really answers: the session's tiny engine live in a real Triton,
deployed through ``engine.built`` (tests/integration/gateway/conftest.py).

``POST /v1/chat/completions`` gets requests generated from the gateway's own OpenAPI document, valid ones and
invalid ones, more than 15 of each; half of them ask for the served model (so they reach Triton rather than stop at
``model_not_found``) and half stream (the SSE route). Every answer is a 4xx in the one error shape
``{"error": {"code", "message"}}`` or a whole answer: a JSON completion, or an event stream that ends with
``[DONE]`` (or an error event) — never a 5xx, and the gateway keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from tests.integration.gateway.conftest import MODEL, RunningGateway

pytestmark = pytest.mark.slow
EXAMPLES = 25  # per operation and generation mode (the issue asks for more than 15)
FINISH = {"stop", "length"}
QUESTIONS = ["如何注册CloudMax账号？", "怎么申请发票？", "忘记密码了怎么办", "hello"]
# schemathesis stops reading an event stream after 20 events by default, so a long answer (one chunk per token, up to
# 256) came back without its [DONE] and failed this test now and then: read every event of the longest answer.
MAX_STREAM_EVENTS = 1024


def error_shape(body: object) -> None:
    assert isinstance(body, dict), body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"] and isinstance(error["message"], str), error


def check_stream(text: str) -> str:
    """A whole SSE answer: JSON chunks, one finish_reason, then [DONE]; or an error event in the one shape."""
    data = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]
    assert data, text[:300]
    chunks = [json.loads(d) for d in data if d != "[DONE]"]
    errors = [c for c in chunks if "error" in c]
    if errors:
        error_shape(errors[-1])
        return "sse error"
    assert data[-1] == "[DONE]", data[-3:]
    finishes = [c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c.get("finish_reason")]
    assert len(finishes) == 1 and finishes[0] in FINISH, finishes
    return "sse answer"


def check(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        error_shape(response.json())
        return f"{response.status_code} {response.json()['error']['code']}"
    # schemathesis' Response keeps every header as a list of values
    ctype = " ".join(v for k, values in response.headers.items() if k.lower() == "content-type" for v in values)
    if ctype.startswith("text/event-stream"):
        assert not response.stream_cut_short, "schemathesis stopped reading the stream before it ended"
        return check_stream(response.text)
    choice = response.json()["choices"][0]
    assert isinstance(choice["message"]["content"], str) and choice["finish_reason"] in FINISH, choice
    return "json answer"


def steer(case, key: str, served: bool, stream: bool, question: str):  # type: ignore[no-untyped-def]
    """Our key on every case (auth is fuzzed elsewhere). A ``served`` case asks the served model one question and keeps
    only the generated fields that cannot be out of range, so it reaches Triton: schema-valid bodies almost always
    carry some parameter the gateway refuses (a 400 before any engine call)."""
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    case.headers["Authorization"] = f"Bearer {key}"
    if isinstance(case.body, dict):
        if served:
            kept = {k: v for k, v in case.body.items() if k in {"metadata", "user", "stream_options"}}
            budget = case.body.get("max_tokens")
            if isinstance(budget, int) and 1 <= budget <= 256:
                kept["max_tokens"] = budget
            case.body = {**kept, "model": MODEL, "messages": [{"role": "user", "content": question}]}
        if stream:
            case.body["stream"] = True
    return case


def fuzz(strategy: st.SearchStrategy, base: str, key: str, seen: Counter) -> None:
    # derandomize: the same examples every run, so CI is not a lottery (an unseeded run once drew no streamed
    # request that reached the engine among 50: 8 JSON answers, 0 SSE)
    @settings(
        max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
    )
    @given(
        case=st.tuples(strategy, st.booleans(), st.booleans(), st.sampled_from(QUESTIONS) | st.text(max_size=40)).map(
            lambda t: steer(t[0], key, *t[1:])
        )
    )
    def run(case) -> None:  # type: ignore[no-untyped-def]
        seen[check(case.call(base_url=base, timeout=60))] += 1
        seen["requests"] += 1

    run()


@pytest.mark.timeout(600)
async def test_chat_completions_json_and_sse_survive_schemathesis_with_a_live_engine(gateway: RunningGateway) -> None:
    import schemathesis
    from schemathesis import GenerationMode

    base = gateway.http.removesuffix("/v1")
    seen: Counter = Counter()

    def both_modes() -> None:  # schemathesis and hypothesis block: the gateway serves on this test's loop meanwhile
        config = schemathesis.config.SchemathesisConfig.from_dict({"max-stream-events": MAX_STREAM_EVENTS})
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json", config=config)
        chat = schema["/v1/chat/completions"]["POST"]
        fuzz(chat.as_strategy(generation_mode=GenerationMode.POSITIVE), base, gateway.keys["app"], seen)
        with contextlib.suppress(Unsatisfiable):
            fuzz(chat.as_strategy(generation_mode=GenerationMode.NEGATIVE), base, gateway.keys["app"], seen)

    await asyncio.to_thread(both_modes)
    print(f"schemathesis on POST /v1/chat/completions: {dict(seen)}")
    assert seen["requests"] > 2 * 15
    assert seen["json answer"] and seen["sse answer"], seen  # the engine really answered, both ways
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{base}/healthz")).status_code == 200
