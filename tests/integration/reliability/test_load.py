"""Load: 50 concurrent streaming chats on loopback against the real gateway + Triton, with zero errors.

Latency and throughput are reported (printed and attached to the test report), never asserted: speed is what
``kefu bench`` measures; this test guards that concurrency never turns into errors, lost or truncated streams.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from kefu.bench.streams import Timed, gateway_grpc, gateway_sse, grpc_channel, p50_ms, p99_ms
from proto.kefu.gateway.v1 import chat_pb2_grpc
from tests.integration.gateway.conftest import RunningGateway

pytestmark = pytest.mark.slow
STREAMS = 50
MAX_TOKENS = 12
QUESTIONS = ["如何申请退款？", "忘记密码怎么办？", "支持哪些付款方式？", "How do I open a ticket?"]


@pytest.mark.timeout(90)
async def test_fifty_concurrent_streams_all_complete(gateway: RunningGateway, record_property) -> None:
    key = gateway.keys["app"]
    async with grpc_channel(gateway.grpc) as channel, httpx.AsyncClient(timeout=60) as http:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        base = gateway.http

        async def one(i: int) -> Timed:
            question = QUESTIONS[i % len(QUESTIONS)]
            # Half over gRPC, half over OpenAI SSE: both APIs share the answerer, the rate limiter and Triton.
            if i % 2:
                return await gateway_grpc(stub, key, question, MAX_TOKENS)
            return await gateway_sse(http, base, key, question, MAX_TOKENS)

        t0 = time.perf_counter()
        async with asyncio.timeout(60):
            results = await asyncio.gather(*(one(i) for i in range(STREAMS)), return_exceptions=True)
        wall = time.perf_counter() - t0

    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} of {STREAMS} streams failed, e.g. {errors[0]!r}"
    done = [r for r in results if isinstance(r, Timed)]
    assert all(r.tokens == MAX_TOKENS for r in done), [r.tokens for r in done]
    ttft = [r.ttft_s for r in done]
    report = {
        "streams": STREAMS,
        "ttft_ms_p50": round(p50_ms(ttft), 1),
        "ttft_ms_p99": round(p99_ms(ttft), 1),
        "aggregate_tok_s": round(sum(r.tokens for r in done) / wall, 1),
        "wall_s": round(wall, 2),
    }
    for k, v in report.items():
        record_property(k, v)
    print(f"load: {report}")
