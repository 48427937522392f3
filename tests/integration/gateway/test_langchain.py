"""LangChain's ``ChatOpenAI`` (a client many customer apps use) against the running gateway, unchanged: invoke,
stream (sync and async), multi-turn messages, parameters, and errors raised as the OpenAI SDK's own exceptions."""

from __future__ import annotations

import asyncio

import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from tests.integration.conftest import FAQ

from .conftest import MODEL, RunningGateway, answer_row

pytestmark = pytest.mark.slow
QUESTION = FAQ[5][0]


def chat(gw: RunningGateway, key: str | None = None, **options: object) -> ChatOpenAI:
    return ChatOpenAI(base_url=gw.http, api_key=key or gw.keys["app"], model=MODEL, max_retries=0, **options)


async def test_invoke_and_stream_agree(gateway: RunningGateway) -> None:
    llm = chat(gateway)
    whole = await llm.ainvoke(QUESTION)
    assert isinstance(whole, AIMessage) and whole.content
    assert whole.response_metadata["finish_reason"] in ("stop", "length")
    assert whole.usage_metadata["output_tokens"] > 0
    chunks = [chunk async for chunk in llm.astream(QUESTION)]
    assert "".join(c.content for c in chunks) == whole.content

    def customer_app() -> tuple[str, str]:  # the blocking API, beside the gateway's event loop
        return llm.invoke(QUESTION).content, "".join(c.content for c in llm.stream(QUESTION))

    assert await asyncio.to_thread(customer_app) == (whole.content, whole.content)


async def test_multi_turn_messages_and_conversation_header(gateway: RunningGateway) -> None:
    llm = chat(gateway, default_headers={"X-Kefu-Conversation-Id": "lc-conv-1"})
    messages = [
        SystemMessage("你是客服。"),
        HumanMessage(FAQ[1][0]),
        AIMessage(FAQ[1][1]),
        HumanMessage(QUESTION),
    ]
    reply = await llm.ainvoke(messages)
    # The question is the last human message (this engine is ungrounded: the earlier turns only steer retrieval).
    assert reply.content == (await llm.ainvoke(QUESTION)).content
    # The answer id (quote it to flag the answer) is the completion id LangChain keeps in the metadata.
    row = await answer_row(gateway, reply.response_metadata["id"])
    assert (row.question, row.conversation_id) == (QUESTION, "lc-conv-1")


async def test_parameters_are_honoured(gateway: RunningGateway) -> None:
    full = (await chat(gateway, max_tokens=200).ainvoke(QUESTION)).content
    assert len(full) >= 8
    stop = full[4:6]
    cut = await chat(gateway, max_tokens=200).ainvoke(QUESTION, stop=[stop])
    assert cut.content == full[: full.index(stop)] and cut.response_metadata["finish_reason"] == "stop"
    short = await chat(gateway, max_tokens=3).ainvoke(QUESTION)
    assert short.usage_metadata["output_tokens"] == 3 and short.response_metadata["finish_reason"] == "length"
    seeded = chat(gateway, temperature=1.0, seed=21)
    a, b = (await seeded.ainvoke(QUESTION)).content, (await seeded.ainvoke(QUESTION)).content
    assert a == b != (await chat(gateway, temperature=0).ainvoke(QUESTION)).content
    lp = await chat(gateway, logprobs=True, top_logprobs=2).ainvoke(QUESTION)
    content = lp.response_metadata["logprobs"]["content"]
    assert len(content) == lp.usage_metadata["output_tokens"]
    assert all(t["logprob"] <= 0 and len(t["top_logprobs"]) == 2 for t in content)


async def test_errors_surface_as_the_sdk_exceptions(gateway: RunningGateway) -> None:
    with pytest.raises(openai.AuthenticationError):
        await chat(gateway, key="kefu_not-a-key").ainvoke(QUESTION)
    with pytest.raises(openai.BadRequestError, match="response_format"):
        await chat(gateway).ainvoke(QUESTION, response_format={"type": "json_object"})
    with pytest.raises(openai.BadRequestError, match="top_p"):
        await chat(gateway, top_p=0.5).ainvoke(QUESTION)  # greedy: a nucleus would change nothing
    with pytest.raises(openai.BadRequestError, match="n:"):
        await chat(gateway, n=2).ainvoke(QUESTION)
