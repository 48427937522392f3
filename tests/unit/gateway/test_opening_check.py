"""The gateway holds an answer's opening until judged: grounded answers stream on, drifting ones are handed off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from libs.common.answer_check import MAX_HELD_TOKENS
from libs.common.prompting import grounded_context
from libs.common.triton_stream import Delta
from services.gateway.opening_check import checked

REFERENCES = grounded_context("", [("如何申请退款？", "在订单详情页点击「申请退款」，审核通过后款项原路退回。")])
HANDOFF = "这个问题我转给人工客服为您处理。"


class Engine:
    """A token stream as Triton's would arrive, recording whether it was closed (the request cancelled)."""

    def __init__(self, pieces: list[str], logprobs: bool = False) -> None:
        self.pieces, self.logprobs, self.closed, self.sent = pieces, logprobs, False, 0

    async def stream(self) -> AsyncIterator[Delta]:
        try:
            for i, piece in enumerate(self.pieces, start=1):
                self.sent = i
                last = i == len(self.pieces)
                items = [{"token": piece, "logprob": -0.1}] if self.logprobs else None
                yield Delta(piece, i, 30, "stop" if last else "", items)
        finally:
            self.closed = True


def run(engine: Engine, bar: float = 0.5, stop: tuple[str, ...] = ()) -> tuple[list[Delta], dict]:
    row: dict = {"answer_id": "a1"}

    async def go() -> list[Delta]:
        return [d async for d in checked(engine.stream(), REFERENCES, bar, HANDOFF, row, "live", stop=stop)]

    return asyncio.run(go()), row


def test_a_grounded_answer_streams_whole_with_its_opening_as_the_first_delta() -> None:
    pieces = ["在", "订单", "详情页", "点击", "「申请退款」", "。"]
    engine = Engine(pieces, logprobs=True)
    out, row = run(engine)
    assert "".join(d.text for d in out) == "".join(pieces)
    assert out[0].text == "在订单详情页"  # held until four bigrams could be judged, then sent as one delta
    assert out[0].token_count == 3 and out[0].prompt_tokens == 30
    assert [item["token"] for item in out[0].logprobs] == ["在", "订单", "详情页"]
    assert out[-1].finish_reason == "stop" and "handoff" not in row
    assert engine.closed


def test_a_drifting_answer_is_handed_off_and_its_engine_request_closed() -> None:
    engine = Engine(["安全组", "是一种", "虚拟", "防火墙", "，用来控制", "流量。"], logprobs=True)
    out, row = run(engine)
    assert [d.text for d in out] == [HANDOFF]
    assert out[0].finish_reason == "stop" and out[0].token_count == 0 and out[0].logprobs == []
    assert row["handoff"] is True and row["ungrounded"] is True  # covered question: not an unanswered one
    assert engine.closed and engine.sent == 2  # judged after its opening (安全组是一种): the rest never generated


def test_an_answer_shorter_than_the_opening_is_judged_at_its_end() -> None:
    out, row = run(Engine(["申请", "退款。"]))  # three bigrams, all in the references
    assert "".join(d.text for d in out) == "申请退款。" and "handoff" not in row
    out, row = run(Engine(["好", "的。"]))  # one bigram, not in the references
    assert [d.text for d in out] == [HANDOFF] and row["handoff"] is True
    out, row = run(Engine(["是", "。"]))  # one character: too short to judge
    assert "".join(d.text for d in out) == "是。" and "handoff" not in row
    out, row = run(Engine(["\n"] * 8))  # blank lines are no answer
    assert [d.text for d in out] == [HANDOFF] and row["handoff"] is True


def test_a_bar_of_zero_lets_everything_through() -> None:
    out, row = run(Engine(["安全组", "是一种", "虚拟", "防火墙。"]), bar=0.0)
    assert "".join(d.text for d in out) == "安全组是一种虚拟防火墙。" and "handoff" not in row


def test_leaving_early_closes_the_engine_request() -> None:
    engine = Engine(["在", "订单", "详情页", "点击", "「申请退款」", "。"])

    async def go() -> None:
        stream = checked(engine.stream(), REFERENCES, 0.5, HANDOFF, {}, "live")
        await anext(stream)  # the judged opening: the client then goes away
        await stream.aclose()

    asyncio.run(go())
    assert engine.closed and engine.sent == 3


def test_the_opening_judged_is_what_the_client_sees_before_a_stop_string() -> None:
    # Grounded up to the stop string "点击", drifting after it: the client sees only the grounded part.
    engine = Engine(["在订单", "详情页", "点击", "安全组是一种虚拟防火墙", "。"])
    out, row = run(engine, bar=0.75, stop=("点击",))
    assert "handoff" not in row and "".join(d.text for d in out).startswith("在订单详情页点击")
    # Drifting before it: handed off, though the text after the stop string would have been grounded.
    out, row = run(Engine(["安全组", "是", "一种", "，", "在订单详情页点击「申请退款」"]), bar=0.75, stop=("，",))
    assert [d.text for d in out] == [HANDOFF] and row["handoff"] is True


def test_the_hold_is_bounded() -> None:
    engine = Engine(["\n"] * 100)
    out, row = run(engine)
    assert [d.text for d in out] == [HANDOFF] and row["handoff"] is True
    assert engine.sent == MAX_HELD_TOKENS and engine.closed  # judged after the cap, not after 100 tokens
