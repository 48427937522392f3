"""Who may call what, limits and the one error shape: a gateway on real Tansu with its own SQLite database and
NO Triton behind it (so an allowed chat call shows the 503 path, and nothing here needs an engine export)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from openai import APIStatusError, AsyncOpenAI

from libs.common.apikeys import create_key
from libs.common.db import make_engine, make_sessionmaker
from libs.common.tables import Deployment
from proto.kefu.gateway.v1 import chat_pb2, chat_pb2_grpc
from tests.conftest import free_port

from .conftest import MODEL, RunningGateway, gateway_settings, run_gateway

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "如何申请退款？"}]}
# (method, path, body, status for an allowed role with no engine deployed)
ENDPOINTS = [
    ("POST", "/chat/completions", CHAT, 503),
    ("GET", "/models", None, 200),
    ("GET", "/stats/lengths", None, 200),
    ("GET", "/deployments", None, 200),
    ("POST", "/keys", {"role": "app"}, 201),
    ("POST", "/deployments/rollback", {}, 409),
]
ALLOWED = {"/chat/completions": {"app", "admin"}, "/models": {"app", "admin"}}


@pytest.fixture(scope="module")
async def bare(tmp_path_factory: pytest.TempPathFactory, tansu: str) -> AsyncIterator[RunningGateway]:
    home = tmp_path_factory.mktemp("bare-gateway")
    settings = gateway_settings(
        home,
        f"sqlite+aiosqlite:///{home / 'kefu.db'}",
        tansu,
        f"127.0.0.1:{free_port()}",  # nothing listens there: Triton is "down"
        migrate_on_start=True,
        gateway_key_cache_seconds=0,
        gateway_max_question_chars=50,
        gateway_max_body_bytes=4096,
    )
    from libs.common.db import upgrade_database

    await asyncio.to_thread(upgrade_database, settings.effective_database_url)
    async with run_gateway(settings) as gw:
        yield gw


def expected(path: str, role: str | None, allowed_status: int) -> int:
    if role in (None, "wrong"):
        return 401
    return allowed_status if role in ALLOWED.get(path, {"admin"}) else 403


@pytest.mark.parametrize("role", [None, "wrong", "app", "agent", "admin"])
async def test_http_auth_matrix(bare: RunningGateway, role: str | None) -> None:
    headers = {} if role is None else {"Authorization": f"Bearer {bare.keys.get(role, 'kefu_kxx_wrong')}"}
    async with httpx.AsyncClient() as client:
        for method, path, body, allowed_status in ENDPOINTS:
            r = await client.request(method, bare.http + path, json=body, headers=headers)
            assert r.status_code == expected(path, role, allowed_status), (method, path, r.text)
            if r.status_code >= 400:
                assert set(r.json()) == {"error"} and set(r.json()["error"]) == {"code", "message"}
            if r.status_code == 401:
                assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("role", "code"),
    [
        (None, grpc.StatusCode.UNAUTHENTICATED),
        ("wrong", grpc.StatusCode.UNAUTHENTICATED),
        ("agent", grpc.StatusCode.PERMISSION_DENIED),
        ("app", grpc.StatusCode.UNAVAILABLE),
        ("admin", grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_grpc_auth_matrix(bare: RunningGateway, role: str | None, code: grpc.StatusCode) -> None:
    metadata = () if role is None else (("authorization", f"Bearer {bare.keys.get(role, 'kefu_wrong')}"),)
    async with grpc.aio.insecure_channel(bare.grpc) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        for call in (stub.Chat, stub.ChatStream):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                result = call(chat_pb2.ChatRequest(question="你好"), metadata=metadata)
                if hasattr(result, "__aiter__"):
                    [m async for m in result]
                else:
                    await result
            assert info.value.code() == code


async def test_rate_limit_429_and_resource_exhausted(bare: RunningGateway) -> None:
    engine = make_engine(bare.settings.effective_database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        _, key = await create_key(session, "app", rate_limit_per_minute=2)
    await engine.dispose()
    async with httpx.AsyncClient() as client:
        codes = [
            (await client.get(f"{bare.http}/models", headers={"Authorization": f"Bearer {key}"})).status_code
            for _ in range(3)
        ]
        limited = await client.get(f"{bare.http}/models", headers={"Authorization": f"Bearer {key}"})
    assert codes[:2] == [200, 200] and codes[2] == 429
    assert limited.json()["error"]["code"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
    async with grpc.aio.insecure_channel(bare.grpc) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await chat_pb2_grpc.ChatServiceStub(channel).Chat(
                chat_pb2.ChatRequest(question="你好"), metadata=(("authorization", f"Bearer {key}"),)
            )
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({**CHAT, "messages": [{"role": "user", "content": "长" * 51}]}, 413, "too_large"),
        ({**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}, 413, "too_large"),  # body > 4096 bytes
        ({**CHAT, "messages": []}, 400, "invalid_request"),
        ({**CHAT, "messages": [{"role": "system", "content": "hi"}]}, 400, "invalid_request"),
        ({**CHAT, "messages": [{"role": "user", "content": "  "}]}, 400, "invalid_request"),
        ({**CHAT, "max_tokens": 0}, 400, "invalid_request"),
        ({**CHAT, "n": 2}, 400, "invalid_request"),
        ({**CHAT, "model": "gpt-4o"}, 404, "model_not_found"),
        ({"messages": CHAT["messages"]}, 400, "invalid_request"),
    ],
)
async def test_invalid_input_one_error_shape(bare: RunningGateway, body: dict, status: int, code: str) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{bare.http}/chat/completions", json=body, headers=bare.auth("app"))
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text


async def test_grpc_invalid_argument(bare: RunningGateway) -> None:
    async with grpc.aio.insecure_channel(bare.grpc) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await chat_pb2_grpc.ChatServiceStub(channel).Chat(
                chat_pb2.ChatRequest(question="长" * 51), metadata=(("authorization", f"Bearer {bare.keys['app']}"),)
            )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_triton_down_with_a_live_engine_is_503(bare: RunningGateway) -> None:
    engine = make_engine(bare.settings.effective_database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        session.add(
            Deployment(
                engine_id="sha-down",
                model_id="m",
                dataset_id="d",
                triton_model=MODEL,
                triton_version=1,
                state="live",
                traffic_percent=100.0,
                requests=0,
                errors=0,
            )
        )
    await engine.dispose()
    client = AsyncOpenAI(base_url=bare.http, api_key=bare.keys["app"], max_retries=0)
    for _ in range(50):  # the routing table follows within rollout_poll_seconds
        models = await client.models.list()
        if models.data and getattr(models.data[0], "engine_id", None) == "sha-down":
            break
        await asyncio.sleep(0.1)
    with pytest.raises(APIStatusError) as info:
        await client.chat.completions.create(model=MODEL, messages=CHAT["messages"])
    assert info.value.status_code == 503
    assert "sha-down" in info.value.message and "not being served by Triton" in info.value.message
    await client.close()
