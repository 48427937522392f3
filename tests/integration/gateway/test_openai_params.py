"""Every OpenAI parameter honoured or refused, through the official SDK (sync and async) and gRPC, on the real stack.

The engine has random weights, so its text is noise, but it is deterministic: a stop string is taken from an answer
and the same question asked again must end right before it; a seeded sample must repeat itself.
"""

from __future__ import annotations

import asyncio

import grpc
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from proto.kefu.gateway.v1 import chat_pb2, chat_pb2_grpc
from tests.integration.conftest import FAQ

from .conftest import MODEL, RunningGateway, answer_row

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": FAQ[0][0]}]


def client(gw: RunningGateway) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=gw.http, api_key=gw.keys["app"], max_retries=0)


async def ask(gw: RunningGateway, **params: object) -> openai.types.chat.ChatCompletion:
    async with client(gw) as c:
        return await c.chat.completions.create(model=MODEL, messages=params.pop("messages", QUESTION), **params)


async def ask_streamed(gw: RunningGateway, **params: object) -> tuple[str, str | None]:
    async with client(gw) as c:
        stream = await c.chat.completions.create(model=MODEL, messages=QUESTION, stream=True, **params)
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, [c.choices[0].finish_reason for c in chunks if c.choices][-1]


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]}, "tools"),
        ({"tool_choice": "none"}, "tool_choice"),
        ({"functions": [{"name": "lookup", "parameters": {}}]}, "functions"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"n": 2}, "n"),
        ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["audio"]}, "modalities"),
        ({"top_logprobs": 3}, "top_logprobs"),  # needs logprobs: true, as OpenAI
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"logit_bias": {"42": 10}}, "logit_bias"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0.5}, "top_p"),  # greedy by default: a nucleus would change nothing
        ({"extra_body": {"guided_json": {}}}, "guided_json"),  # unknown fields are named, not ignored
    ],
)
async def test_refused_parameters_raise_bad_request_naming_them(gateway: RunningGateway, params, name) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(gateway, **params)
    error = caught.value
    # The SDK keeps the error object as ``body``: the one error shape, the message starting with the parameter.
    assert error.status_code == 400 and error.code == "invalid_request", error
    assert error.body["message"].startswith(f"{name}:"), error.body


async def test_sync_client_refusal_and_stream_with_stop(gateway: RunningGateway) -> None:
    def customer_app() -> tuple[str, str]:
        with OpenAI(base_url=gateway.http, api_key=gateway.keys["app"], max_retries=0) as c:
            with pytest.raises(openai.BadRequestError, match="response_format"):
                c.chat.completions.create(model=MODEL, messages=QUESTION, response_format={"type": "json_object"})
            full = c.chat.completions.create(model=MODEL, messages=QUESTION).choices[0].message.content
            stream = c.chat.completions.create(model=MODEL, messages=QUESTION, stream=True, stop=full[4:6])
            return full, "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    # The gateway serves from this test's event loop: the blocking client runs beside it.
    full, text = await asyncio.to_thread(customer_app)
    assert text == full[: full.index(full[4:6])]


async def test_stop_cuts_before_the_first_match_whole_and_streamed(gateway: RunningGateway) -> None:
    full = await ask(gateway, max_tokens=200)
    text = full.choices[0].message.content
    assert len(text) >= 12, text
    for stop in (text[5:7], [text[9:10], "never-in-noise", text[3:6]]):
        first = min(text.index(s) for s in ([stop] if isinstance(stop, str) else stop) if s in text)
        cut = await ask(gateway, max_tokens=200, stop=stop)
        assert cut.choices[0].message.content == text[:first] and cut.choices[0].finish_reason == "stop"
        # Generation ended at the match: the engine was not left running to its budget.
        assert cut.usage.completion_tokens < full.usage.completion_tokens
        assert await ask_streamed(gateway, max_tokens=200, stop=stop) == (text[:first], "stop")
        row = await answer_row(gateway, cut.id)
        assert (row.answer, row.finish_reason, row.status) == (text[:first], "stop", "ok")


async def test_sampling_is_per_request_seeded_and_greedy_by_default(gateway: RunningGateway) -> None:
    greedy = (await ask(gateway)).choices[0].message.content
    assert (await ask(gateway, temperature=0, seed=5)).choices[0].message.content == greedy
    # A nucleus of one token is greedy again: the sampling path itself picks the argmax.
    assert (await ask(gateway, temperature=1.0, top_p=1e-6)).choices[0].message.content == greedy
    # Sampled and greedy requests decode in one continuous batch without changing each other.
    runs = await asyncio.gather(
        ask(gateway, temperature=1.0, seed=42), ask(gateway), ask(gateway, temperature=1.0, seed=42),
        ask(gateway, temperature=1.0, seed=43),
    )  # fmt: skip
    a, g, b, c = (r.choices[0].message.content for r in runs)
    assert a == b and g == greedy and a != greedy and c != a


async def test_conversation_messages_and_id(gateway: RunningGateway) -> None:
    messages = [
        {"role": "system", "content": "not used"},
        {"role": "user", "content": FAQ[1][0]},
        {"role": "assistant", "content": FAQ[1][1]},
        {"role": "user", "content": FAQ[2][0]},
    ]
    async with client(gateway) as c:
        raw = await c.chat.completions.with_raw_response.create(
            model=MODEL, messages=messages, metadata={"conversation_id": "conv-42"}
        )
        single = await c.chat.completions.create(model=MODEL, messages=[messages[-1]])
    completion = raw.parse()
    assert raw.headers["x-kefu-conversation-id"] == "conv-42"
    # The question is the last user message (this engine is ungrounded: the earlier turns only steer retrieval).
    assert completion.choices[0].message.content == single.choices[0].message.content
    assert (await answer_row(gateway, completion.id)).question == FAQ[2][0]
    with pytest.raises(openai.BadRequestError, match=r"messages\[0\]\.role"):
        await ask(gateway, messages=[{"role": "tool", "content": "x", "tool_call_id": "t"}, *QUESTION])


async def test_grpc_conversation_stop_and_sampling(gateway: RunningGateway) -> None:
    metadata = (("authorization", f"Bearer {gateway.keys['app']}"),)
    history = [chat_pb2.Turn(role="user", content=FAQ[1][0]), chat_pb2.Turn(role="assistant", content=FAQ[1][1])]
    async with grpc.aio.insecure_channel(gateway.grpc) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        plain = await stub.Chat(chat_pb2.ChatRequest(question=FAQ[0][0]), metadata=metadata)
        assert len(plain.conversation_id) == 32  # made up, for the client to send with the next turn
        stop = plain.answer[4:6]
        reply = await stub.Chat(
            chat_pb2.ChatRequest(question=FAQ[0][0], conversation_id="c-7", history=history, stop=[stop]),
            metadata=metadata,
        )
        assert (reply.answer, reply.finish_reason) == (plain.answer[: plain.answer.index(stop)], "stop")
        assert reply.conversation_id == "c-7"
        seeded = [
            await stub.Chat(chat_pb2.ChatRequest(question=FAQ[0][0], temperature=1.0, seed=9), metadata=metadata)
            for _ in range(2)
        ]
        assert seeded[0].answer == seeded[1].answer != plain.answer
        for bad, name in (({"temperature": 9.0}, "temperature"), ({"history": [chat_pb2.Turn(role="x")]}, "history")):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Chat(chat_pb2.ChatRequest(question=FAQ[0][0], **bad), metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and caught.value.details().startswith(name)
