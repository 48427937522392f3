"""Triton dies under a running gateway: chat answers 503 (with Retry-After), then recovers once Triton is back.

Its own tritonserver (on its own ports, from the session's engine repository) and its own gateway on a fresh
database, so killing it never disturbs the shared server the other suites use.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc.aio as aioclient

from services.builder.triton_server import triton_command, wait_ready
from tests.conftest import free_port
from tests.integration.conftest import Built
from tests.integration.gateway.conftest import (
    MODEL,
    announce,
    engine_event,
    gateway_settings,
    record_engine_row,
    run_gateway,
    wait_for_state,
)

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def tritonserver(repo: Path, grpc_port: int, work: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    argv, env = triton_command(repo, free_port(), grpc_port, free_port(), work)
    with (work / "tritonserver.log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        await wait_ready(f"127.0.0.1:{grpc_port}", timeout=60)
        client = aioclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        try:
            await client.load_model(MODEL)
        finally:
            await client.close()
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def chat_status(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "如何申请退款？"}], "max_tokens": 4}
    return await client.post(f"{url}/chat/completions", json=body, headers=headers)


@pytest.mark.timeout(150)
async def test_gateway_answers_503_while_triton_is_down_and_recovers(
    tmp_path: Path, tansu: str, fb_db: str, built: Built
) -> None:
    grpc_port = free_port()
    work = tmp_path / "triton"
    work.mkdir()
    settings = gateway_settings(tmp_path / "gw", fb_db, tansu, f"127.0.0.1:{grpc_port}")
    async with tritonserver(built.repo, grpc_port, work) as proc, run_gateway(settings) as gw:
        event = engine_event(built.result.engine_id, MODEL, built.result.triton_version)
        await record_engine_row(settings, event, built.result.version_dir)
        await announce(settings, event)
        await wait_for_state(settings, event.engine_id, "live")
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(50):  # routing follows the new deployment within rollout_poll_seconds
                if (await chat_status(client, gw.http, gw.auth("app"))).status_code == 200:
                    break
                await asyncio.sleep(0.2)
            else:
                pytest.fail("gateway never answered before the outage")

            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            down = await chat_status(client, gw.http, gw.auth("app"))
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] == "unavailable"
            assert down.headers.get("Retry-After")

            async with tritonserver(built.repo, grpc_port, work):
                statuses = []
                for _ in range(100):  # the gateway's gRPC channel reconnects on its own (backoff ≤ a few s)
                    statuses.append((await chat_status(client, gw.http, gw.auth("app"))).status_code)
                    if statuses[-1] == 200:
                        break
                    await asyncio.sleep(0.2)
                assert statuses[-1] == 200, statuses
                assert set(statuses) <= {200, 503}, statuses
