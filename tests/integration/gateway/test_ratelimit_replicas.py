"""Rate limits shared by gateway replicas through a real redis-server (started here on a free port): the GCRA Lua
script is atomic under concurrency from separate event loops, agrees with the Python GCRA, and two gateway
PROCESSES answer one key's requests over its limit with 429 whichever of them is asked; `kefu up` starts a
memory-only redis-server when KEFU_REDIS_URL names this machine and nothing answers there."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from kefu.tansu import wait_port
from libs.common.apikeys import create_key
from libs.common.db import make_engine, make_sessionmaker, upgrade_database
from services.gateway.ratelimit import KEY_PREFIX, RedisLimiter, gcra
from services.gateway.sidecars import answers
from tests.conftest import free_port, running_tansu

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A memory-only redis-server of our own (not the machine's :6379, which other things may use)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is required for the shared rate-limit tests (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(wait_port("127.0.0.1", port))
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def hammer_in_own_loop(url: str, key: str, per_minute: int, n: int, out: list[float]) -> None:
    """``n`` concurrent requests from a limiter with its own event loop and connections (one 'replica')."""

    async def run() -> None:
        # Atomicity is tested here, not the fallback: a loaded CI box may take longer than the 0.25 s default to
        # open 25 connections at once, and each such request would be (rightly) limited per process instead.
        limiter = RedisLimiter(url, timeout=5.0)
        try:
            out.extend(await asyncio.gather(*(limiter.take(key, per_minute) for _ in range(n))))
        finally:
            await limiter.aclose()

    asyncio.run(run())


def test_limit_is_atomic_across_event_loops(redis_url: str) -> None:
    results: list[list[float]] = [[], [], []]
    threads = [threading.Thread(target=hammer_in_own_loop, args=(redis_url, "atomic", 30, 25, out)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    waits = [w for out in results for w in out]
    assert len(waits) == 75
    assert sum(w == 0 for w in waits) == 30  # exactly the limit, however the 75 requests interleaved
    assert all(0 < w <= 60 for w in waits if w)


async def test_lua_script_agrees_with_the_python_gcra(redis_url: str) -> None:
    limiter = RedisLimiter(redis_url)
    try:
        waits = [await limiter.take("parity", 3) for _ in range(4)]
        assert waits[:3] == [0.0, 0.0, 0.0]
        tat = None
        for _ in range(3):
            tat = gcra(tat, 0, 3).tat_us
        assert waits[3] == pytest.approx(gcra(tat, 0, 3).retry_after, abs=0.05)  # ≈ 20 s, less the elapsed µs
        ttl_ms = await limiter.client.pttl(KEY_PREFIX + "parity")
        assert 59_000 < ttl_ms <= 60_001  # the key lives only until the allowance is full again
    finally:
        await limiter.aclose()


@contextlib.asynccontextmanager
async def gateway_process(env: dict[str, str], port: int, log: Path) -> AsyncIterator[str]:
    """`kefu serve gateway` as its own process (as `kefu up` or a Deployment runs it), healthy before we go on."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kefu", "serve", "gateway", cwd=ROOT, env=env, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=1.0) as client:
            deadline = time.monotonic() + 90
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{base}/healthz")).status_code == 200:
                        break
                if proc.returncode is not None or time.monotonic() > deadline:
                    tail = (await asyncio.to_thread(log.read_text))[-3000:]
                    pytest.fail(f"gateway on {port} did not start:\n{tail}")
                await asyncio.sleep(0.2)
        yield f"{base}/v1"
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest.fixture
def own_broker() -> Iterator[str]:
    """A broker of their own for the two gateway processes: killed consumers of the shared session broker's
    `kefu-gateway` group left it unable to seat the next suite's gateway (it never started)."""
    with running_tansu() as bootstrap:
        yield bootstrap


async def test_two_gateway_processes_share_one_limit(tmp_path: Path, own_broker: str, redis_url: str) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}"
    await asyncio.to_thread(upgrade_database, database_url)
    engine = make_engine(database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        _, key = await create_key(session, "app", name="replicas", rate_limit_per_minute=5)
    await engine.dispose()
    common = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    common.update(
        KEFU_HOME=str(tmp_path / "home"),
        KEFU_DATABASE_URL=database_url,
        KEFU_KAFKA_BOOTSTRAP=own_broker,
        KEFU_KAFKA_SESSION_TIMEOUT_MS="2000",
        KEFU_KAFKA_HEARTBEAT_INTERVAL_MS="500",
        KEFU_MIGRATE_ON_START="false",
        KEFU_TRITON_GRPC_PORT=str(free_port()),  # no Triton: /v1/models needs none
        KEFU_REDIS_URL=redis_url,
        PYTHONUNBUFFERED="1",
    )
    ports = [(free_port(), free_port()) for _ in range(2)]
    envs = [{**common, "KEFU_GATEWAY_PORT": str(h), "KEFU_GATEWAY_GRPC_PORT": str(g)} for h, g in ports]
    async with contextlib.AsyncExitStack() as stack:
        a, b = await asyncio.gather(  # started side by side: each takes seconds to import
            *(
                stack.enter_async_context(gateway_process(env, http, tmp_path / f"gw-{http}.log"))
                for env, (http, _) in zip(envs, ports, strict=True)
            )
        )
        client = await stack.enter_async_context(httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}))
        answers = [(url, (await client.get(f"{url}/models")).status_code) for url in [a, b] * 6]
    codes = [code for _, code in answers]
    assert codes == [200] * 5 + [429] * 7, answers  # 5 a minute for the key, not 5 per replica
    assert {url for url, code in answers if code == 429} == {a, b}  # both replicas refuse once it is spent


def test_kefu_up_starts_redis_when_the_url_names_this_machine_and_nothing_answers(tmp_path: Path) -> None:
    from redis import Redis

    from tests.integration.test_stack import read_until, stack_env

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    env = {**stack_env(tmp_path / "home"), "KEFU_REDIS_URL": url}
    argv = [sys.executable, "-m", "kefu", "up", "--kafka-port", str(free_port()), "--only", "gateway"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = read_until(proc, "ready", timeout=120)
        assert f"redis redis://127.0.0.1:{port}" in lines
        assert Redis.from_url(url).ping()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert not answers(port)  # stopped with the stack
