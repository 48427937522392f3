"""``engine_vs_hf_decode``: the served engine (Triton, ONNX + KV cache) vs in-process HF ``generate``, batch 1.

Both decode the same prompts greedily to exactly ``MAX_TOKENS`` new tokens (``min_new_tokens`` for HF; random
weights never stop on their own for the engine), alternating prompt by prompt. The engine's number includes the
Triton round trip (it is what the gateway gets); ``engine_inproc_tok_s`` is the ONNX engine without Triton, which
tells an engine problem from a serving one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import torch
import tritonclient.grpc.aio as aioclient

from kefu.bench import MAX_TOKENS, MODEL_NAME
from kefu.bench.env import BenchEnv
from kefu.bench.streams import tok_per_s, triton_stream

ROUNDS = 6


def _hf_runner(env: BenchEnv) -> Callable[[str], float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from services.builder.engine import encode_question

    tokenizer = AutoTokenizer.from_pretrained(env.model_dir)
    model = AutoModelForCausalLM.from_pretrained(env.model_dir, dtype=torch.float32).eval()

    @torch.inference_mode()
    def run(question: str) -> float:
        ids = torch.tensor([encode_question(tokenizer, question)])
        t0 = time.perf_counter()
        model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=MAX_TOKENS,
            min_new_tokens=MAX_TOKENS,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        return time.perf_counter() - t0

    return run


def _engine_runner(env: BenchEnv) -> Callable[[str], float]:
    from transformers import AutoTokenizer

    from services.builder.engine import Engine, encode_question

    version_dir = env.home / "triton" / "repository" / MODEL_NAME / "1"
    engine = Engine.from_dir(version_dir)
    tokenizer = AutoTokenizer.from_pretrained(version_dir)

    def run(question: str) -> float:
        ids = encode_question(tokenizer, question)
        t0 = time.perf_counter()
        engine.greedy([ids], MAX_TOKENS)
        return time.perf_counter() - t0

    return run


def _inproc_batch(env: BenchEnv, rows: int) -> float:
    from transformers import AutoTokenizer

    from services.builder.engine import Engine, encode_question

    version_dir = env.home / "triton" / "repository" / MODEL_NAME / "1"
    engine, tokenizer = Engine.from_dir(version_dir), AutoTokenizer.from_pretrained(version_dir)
    prompts = [encode_question(tokenizer, env.questions[i % len(env.questions)]) for i in range(rows)]
    t0 = time.perf_counter()
    for _ in range(2):
        engine.greedy(prompts, MAX_TOKENS)
    return 2 * rows * MAX_TOKENS / (time.perf_counter() - t0)


async def measure(env: BenchEnv, say: Callable[[str], None] = print) -> dict[str, Any]:
    say("bench: decode — Triton engine vs HF generate, batch 1")
    hf, inproc = _hf_runner(env), _engine_runner(env)
    questions = env.questions[:ROUNDS]
    client = aioclient.InferenceServerClient(env.triton_url)
    try:
        # One warm-up of each path: first calls pay for lazy init (ORT arenas, torch kernels, gRPC channel).
        hf(questions[0]), inproc(questions[0])
        await triton_stream(client, MODEL_NAME, questions[0], MAX_TOKENS)
        hf_s, inproc_s, served = 0.0, 0.0, []
        for q in questions:
            hf_s += hf(q)
            inproc_s += inproc(q)
            served.append(await triton_stream(client, MODEL_NAME, q, MAX_TOKENS))
    finally:
        await client.close()
    tokens = MAX_TOKENS * len(questions)
    hf_tps, engine_tps = tokens / hf_s, tok_per_s(served)
    batch16 = _inproc_batch(env, 16)
    return {
        # The ceiling for concurrency16_vs_1: what batching 16 rows buys the engine alone, without any serving.
        "engine_inproc_batch16_tok_s": batch16,
        "engine_inproc_batch16_vs_1": batch16 / (tokens / inproc_s),
        "engine_vs_hf_decode": engine_tps / hf_tps,
        "hf_generate_tok_s": hf_tps,
        "engine_triton_tok_s": engine_tps,
        "engine_inproc_tok_s": tokens / inproc_s,
    }


async def _main() -> None:
    from kefu.bench.env import bench_environment

    async with bench_environment() as env:
        print(await measure(env))


if __name__ == "__main__":
    asyncio.run(_main())
