"""The answer check on the real stack: an engine with a calibrated bar whose answer's opening is not in its
references gets the hand-off reply instead, on every API, logged and counted as a hand-off.

The engine is the session's tiny export (random weights: it answers blank lines, which are no answer), installed as
its own Triton model with a retrieval manifest that carries the trainer's bar. What the engine itself answers is read
from Triton directly and judged first, so the test states what it relies on; tests/unit covers drifting answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from libs.common.answer_check import opening_support
from libs.common.knowledge import entries_from_rows, entry_id_for
from libs.common.prompting import grounded_context
from libs.common.retrieval import Retriever
from libs.common.triton_stream import stream_answer
from proto.kefu.gateway.v1 import chat_pb2, chat_pb2_grpc
from tests.integration.conftest import FAQ, Built, Triton

from .conftest import (
    RunningGateway,
    answer_row,
    grounded_gateway,
)

pytestmark = pytest.mark.slow
MODEL = "kefu-checked"
DATASET = "ds-checked"
BAR = 0.75
QUESTION = "退款要怎么申请"


@pytest.fixture(scope="module")
async def checked(
    tmp_path_factory: pytest.TempPathFactory, tansu: str, triton: Triton, triton_client, built: Built
) -> AsyncIterator[RunningGateway]:
    home = tmp_path_factory.mktemp("checked-home")
    retrieval = {"k": 1, "handoff_threshold": 0.4, "answer_check": {"opening_bigrams": 4, "min_support": BAR}}
    async with grounded_gateway(
        home, tansu, triton, triton_client, built, model=MODEL, dataset=DATASET, retrieval=retrieval
    ) as gw:
        yield gw


async def ungrounded(client: httpx.AsyncClient, gw: RunningGateway) -> float:
    """The gateway's count of answer-check hand-offs on the live route."""
    text = (await client.get(gw.http.removesuffix("/v1") + "/metrics")).text
    name = 'kefu_gateway_ungrounded_answers_total{route="live"} '
    return next((float(line.removeprefix(name)) for line in text.splitlines() if line.startswith(name)), 0.0)


async def test_an_answer_not_drawn_from_its_references_is_handed_off(checked: RunningGateway, triton_client) -> None:
    found = Retriever(entries_from_rows(FAQ)).search(QUESTION, 1)
    context = grounded_context("", [(h.entry.question, h.entry.answer) for h in found.hits])
    raw = "".join([d.text async for d in stream_answer(triton_client, MODEL, QUESTION, max_tokens=16, context=context)])
    support = opening_support(raw, context)
    assert support is not None and support < BAR, f"the engine's answer {raw!r} passes the check after all"

    async with httpx.AsyncClient(timeout=60) as client:
        before = await ungrounded(client, checked)
        whole = await client.post(
            f"{checked.http}/chat/completions",
            headers=checked.auth("app"),
            json={"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 16},
        )
        assert whole.status_code == 200, whole.text
        body = whole.json()
        async with client.stream(
            "POST",
            f"{checked.http}/chat/completions",
            headers=checked.auth("app"),
            json={"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "stream": True},
        ) as r:
            chunks = [json.loads(line[6:]) for line in [x async for x in r.aiter_lines()] if line[6:].startswith("{")]
        after = await ungrounded(client, checked)
    reply = checked.settings.handoff_text()
    # Retrieval was sure (the refund entry), the engine's answer was not from it: a human takes over.
    assert body["kefu"]["entry_ids"] == [entry_id_for("如何申请退款？")] and body["kefu"]["confidence"] >= 0.4
    assert body["kefu"]["handoff"] is True and body["choices"][0]["message"]["content"] == reply
    assert body["choices"][0]["finish_reason"] == "stop"
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert streamed == reply
    row = await answer_row(checked, body["id"])
    assert row.handoff is True and row.ungrounded is True and row.answer == reply and row.confidence >= 0.4
    assert after - before == 2  # the whole answer and the streamed one

    async with grpc.aio.insecure_channel(checked.grpc) as channel:
        answer = await chat_pb2_grpc.ChatServiceStub(channel).Chat(
            chat_pb2.ChatRequest(question=QUESTION), metadata=(("authorization", f"Bearer {checked.keys['app']}"),)
        )
    assert answer.handoff and answer.answer == reply
