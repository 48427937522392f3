"""``logprobs`` / ``top_logprobs`` from the engine's logits, through the official OpenAI SDK and gRPC, on the real
Triton: every logprob ≤ 0, the asked number of alternatives, and a greedy answer's token is always the top-1."""

from __future__ import annotations

import asyncio
import math

import grpc
import pytest
from openai import AsyncOpenAI

from proto.kefu.gateway.v1 import chat_pb2, chat_pb2_grpc
from tests.integration.conftest import FAQ

from .conftest import MODEL, RunningGateway

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": FAQ[3][0]}]


def client(gw: RunningGateway) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=gw.http, api_key=gw.keys["app"], max_retries=0)


def check_greedy(content: list, top: int) -> None:
    for item in content:
        assert item.logprob <= 0 and len(item.top_logprobs) == top
        assert item.token == bytes(item.bytes).decode("utf-8", "backslashreplace")
        if top:
            best = item.top_logprobs[0]
            # Greedy: the chosen token is the most likely one, with the same log-probability.
            assert (best.token, best.bytes) == (item.token, item.bytes)
            assert math.isclose(best.logprob, item.logprob, abs_tol=1e-6)
            values = [t.logprob for t in item.top_logprobs]
            assert values == sorted(values, reverse=True)
            assert all(t.logprob <= 0 for t in item.top_logprobs)


async def test_whole_and_streamed_logprobs_match_the_answer(gateway: RunningGateway) -> None:
    async with client(gateway) as c:
        plain = await c.chat.completions.create(model=MODEL, messages=QUESTION)
        whole = await c.chat.completions.create(model=MODEL, messages=QUESTION, logprobs=True, top_logprobs=3)
        stream = await c.chat.completions.create(
            model=MODEL, messages=QUESTION, logprobs=True, top_logprobs=3, stream=True
        )
        chunks = [chunk async for chunk in stream]
    assert plain.choices[0].logprobs is None  # not asked: not computed, not sent
    choice = whole.choices[0]
    assert choice.message.content == plain.choices[0].message.content  # asking changes nothing in the answer
    content = choice.logprobs.content
    assert len(content) == whole.usage.completion_tokens
    check_greedy(content, 3)
    # The tokens' bytes add up to the answer (no stop string cut it).
    assert b"".join(bytes(t.bytes) for t in content).decode() == choice.message.content
    streamed = [t for ch in chunks if ch.choices and ch.choices[0].logprobs for t in ch.choices[0].logprobs.content]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in content]
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == choice.message.content


async def test_logprobs_without_alternatives_and_beside_other_requests(gateway: RunningGateway) -> None:
    async with client(gateway) as c:
        # Requests with and without logprobs (and a sampled one) decode in one continuous batch.
        bare, asked, sampled, top20 = await asyncio.gather(
            c.chat.completions.create(model=MODEL, messages=QUESTION),
            c.chat.completions.create(model=MODEL, messages=QUESTION, logprobs=True),
            c.chat.completions.create(model=MODEL, messages=QUESTION, logprobs=True, top_logprobs=2, temperature=1.0,
                                      seed=11),
            c.chat.completions.create(model=MODEL, messages=QUESTION, logprobs=True, top_logprobs=20, max_tokens=3),
        )  # fmt: skip
    assert asked.choices[0].message.content == bare.choices[0].message.content
    check_greedy(asked.choices[0].logprobs.content, 0)
    assert len(top20.choices[0].logprobs.content) == 3
    check_greedy(top20.choices[0].logprobs.content, 20)
    for item in sampled.choices[0].logprobs.content:  # a sampled token is never more likely than the best
        assert len(item.top_logprobs) == 2 and item.logprob <= item.top_logprobs[0].logprob + 1e-6


async def test_grpc_offers_the_same_knob(gateway: RunningGateway) -> None:
    metadata = (("authorization", f"Bearer {gateway.keys['app']}"),)
    async with grpc.aio.insecure_channel(gateway.grpc) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        plain = await stub.Chat(chat_pb2.ChatRequest(question=FAQ[3][0]), metadata=metadata)
        reply = await stub.Chat(
            chat_pb2.ChatRequest(question=FAQ[3][0], logprobs=True, top_logprobs=2), metadata=metadata
        )
        streamed = [
            t
            async for m in stub.ChatStream(chat_pb2.ChatRequest(question=FAQ[3][0], logprobs=True), metadata=metadata)
            for t in m.logprobs
        ]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Chat(chat_pb2.ChatRequest(question=FAQ[3][0], top_logprobs=2), metadata=metadata)
    assert not plain.logprobs and reply.answer == plain.answer
    assert len(reply.logprobs) == reply.usage.completion_tokens
    for t in reply.logprobs:
        assert t.logprob <= 0 and len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in reply.logprobs]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("top_logprobs")
