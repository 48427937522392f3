"""Serving-path ratios: the gateway vs Triton direct (throughput, TTFT overhead) and 16 concurrent streams vs 1.

Direct and gateway streams alternate request by request on the same questions, so both see the same machine
state. The gateway is its own process (as deployed); its gRPC API is the primary path and OpenAI SSE is reported
beside it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import tritonclient.grpc.aio as aioclient

from kefu.bench import MAX_TOKENS, MODEL_NAME
from kefu.bench.env import BenchEnv
from kefu.bench.streams import Timed, gateway_grpc, gateway_sse, grpc_channel, p50_ms, tok_per_s, triton_stream
from proto.kefu.gateway.v1 import chat_pb2_grpc

ROUNDS = 12
CONCURRENCY = 16


async def _side_by_side(env: BenchEnv) -> dict[str, Any]:
    client = aioclient.InferenceServerClient(env.triton_url)
    try:
        async with grpc_channel(env.gateway_grpc) as channel, httpx.AsyncClient(timeout=60) as http:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            paths: dict[str, Callable[[str], Any]] = {
                "triton": lambda q: triton_stream(client, MODEL_NAME, q, MAX_TOKENS),
                "grpc": lambda q: gateway_grpc(stub, env.key, q, MAX_TOKENS),
                "sse": lambda q: gateway_sse(http, env.gateway_http, env.key, q, MAX_TOKENS),
            }
            for run in paths.values():  # warm-up: channels, key cache, lazy imports
                await run(env.questions[0])
            runs: dict[str, list[Timed]] = {name: [] for name in paths}
            for i in range(ROUNDS):
                question = env.questions[i % len(env.questions)]
                for name, run in paths.items():
                    runs[name].append(await run(question))
    finally:
        await client.close()
    ttft = {name: p50_ms([r.ttft_s for r in rs]) for name, rs in runs.items()}
    tps = {name: tok_per_s(rs) for name, rs in runs.items()}
    return {
        "gateway_vs_triton_stream": tps["grpc"] / tps["triton"],
        "gateway_http_vs_triton_stream": tps["sse"] / tps["triton"],
        "gateway_ttft_overhead_ms_p50": ttft["grpc"] - ttft["triton"],
        "gateway_http_ttft_overhead_ms_p50": ttft["sse"] - ttft["triton"],
        "triton_ttft_ms_p50": ttft["triton"],
        "triton_stream_tok_s": tps["triton"],
        "gateway_grpc_tok_s": tps["grpc"],
    }


async def _aggregate(env: BenchEnv, streams: int, rounds: int) -> float:
    """Aggregate tok/s of ``streams`` concurrent gateway streams, each running ``rounds`` answers back to back."""
    async with grpc_channel(env.gateway_grpc) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)

        async def worker(n: int) -> int:
            total = 0
            for r in range(rounds):
                question = env.questions[(n + r) % len(env.questions)]
                total += (await gateway_grpc(stub, env.key, question, MAX_TOKENS)).tokens
            return total

        t0 = time.perf_counter()
        tokens = sum(await asyncio.gather(*(worker(n) for n in range(streams))))
        return tokens / (time.perf_counter() - t0)


async def measure(env: BenchEnv, say: Callable[[str], None] = print) -> dict[str, Any]:
    say("bench: gateway vs Triton direct, then 16 concurrent streams vs 1")
    out = await _side_by_side(env)
    one = await _aggregate(env, 1, 4)
    many = await _aggregate(env, CONCURRENCY, 2)
    return {**out, "concurrency1_tok_s": one, "concurrency16_tok_s": many, "concurrency16_vs_1": many / one}


async def _main() -> None:
    from kefu.bench.env import bench_environment

    async with bench_environment() as env:
        print(await measure(env))


if __name__ == "__main__":
    asyncio.run(_main())
