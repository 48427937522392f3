"""Bad input against the gateway's and feedback's APIs: arbitrary JSON bodies, non-JSON bytes and malformed gRPC
messages always get a 4xx (or 503: no engine here) in the one error shape ``{"error": {"code", "message"}}``,
never a 500, and the servers keep serving.

Both services run in threads with their own event loops (so hypothesis' synchronous tests can drive them); no
Triton is started: a body that passes validation reaches the engine call and must come back as a clean 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from libs.common.db import make_engine, make_sessionmaker
from proto.kefu.gateway.v1 import chat_pb2, chat_pb2_grpc
from services.feedback.settings import Settings as FeedbackSettings
from services.gateway.app import create_app as gateway_app
from tests.conftest import free_port
from tests.integration.feedback.conftest import add_key, serve
from tests.integration.gateway.conftest import gateway_settings

pytestmark = pytest.mark.slow

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
# Bodies shaped like the real requests, with wrong types/values in their fields: they get past the JSON parser.
chat_like = st.fixed_dictionaries(
    {"model": json_values | st.just("kefu-chat"), "messages": json_values | st.lists(st.fixed_dictionaries(
        {"role": json_values | st.sampled_from(["user", "system"]), "content": json_values}), max_size=3)},
    optional={"stream": json_values, "max_tokens": json_values, "n": json_values},
)  # fmt: skip
flag_like = st.fixed_dictionaries(
    {"answer_id": json_values, "reason": json_values}, optional={"correction": json_values}
)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@contextlib.contextmanager
def serve_gateway(config: object, port: int) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(gateway_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="gateway-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def apis(tmp_path, tansu: str, fb_db: str, fb_settings: FeedbackSettings) -> Iterator[dict]:
    async def keys() -> dict[str, str]:
        engine = make_engine(fb_db)
        try:
            sessions = make_sessionmaker(engine)
            return {role: await add_key(sessions, role) for role in ("app", "agent", "admin")}
        finally:
            await engine.dispose()

    gw = gateway_settings(tmp_path / "gw", fb_db, tansu, f"127.0.0.1:{free_port()}")
    with serve(fb_settings) as feedback, serve_gateway(gw, gw.gateway_port) as gateway:
        yield {"gateway": gateway, "grpc": f"127.0.0.1:{gw.gateway_grpc_port}", "feedback": feedback.url,
               "keys": asyncio.run(keys())}  # fmt: skip


def check(resp: httpx.Response) -> None:
    assert resp.status_code < 500 or resp.status_code == 503, (resp.status_code, resp.text[:300])
    if resp.status_code >= 400:
        error = resp.json()["error"]
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str)


def post(url: str, key: str, body: object = None, content: bytes | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if content is not None:
        return httpx.post(url, content=content, headers={**headers, "content-type": "application/json"}, timeout=30)
    return httpx.post(url, json=body, headers=headers, timeout=30)


def test_arbitrary_bodies_get_the_error_shape_never_a_500(apis: dict) -> None:
    gw, fb, keys = apis["gateway"], apis["feedback"], apis["keys"]
    targets = [
        (f"{gw}/v1/chat/completions", keys["app"], chat_like),
        (f"{gw}/v1/keys", keys["admin"], json_values),
        (f"{gw}/v1/deployments/rollback", keys["admin"], json_values),
        (f"{fb}/v1/flags", keys["agent"], flag_like),
        (f"{fb}/v1/flags/nope/review", keys["admin"], json_values),
        (f"{fb}/v1/releases", keys["admin"], json_values),
    ]

    @FUZZ
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        url, key, strategy = data.draw(st.sampled_from(targets))
        check(post(url, key, data.draw(strategy)))
        check(post(url, key, content=data.draw(st.binary(max_size=64))))

    fuzz()
    assert httpx.get(f"{gw}/healthz").status_code == 200
    assert httpx.get(f"{fb}/healthz").status_code == 200


def test_nul_characters_are_a_400_everywhere(apis: dict) -> None:
    gw, fb, keys = apis["gateway"], apis["feedback"], apis["keys"]
    nul = "a\x00b"
    cases = [
        (
            f"{gw}/v1/chat/completions",
            keys["app"],
            {"model": "kefu-chat", "messages": [{"role": "user", "content": nul}]},
        ),
        (f"{gw}/v1/keys", keys["admin"], {"role": "app", "name": nul}),
        (f"{fb}/v1/flags", keys["agent"], {"answer_id": nul, "reason": "r"}),
        (f"{fb}/v1/flags", keys["agent"], {"answer_id": "x", "reason": nul}),
        (f"{fb}/v1/flags/a%00b/review", keys["admin"], {"action": "reject"}),
    ]
    for url, key, body in cases:
        resp = post(url, key, body)
        assert resp.status_code == 400, (url, body, resp.status_code, resp.text[:200])
        assert "NUL" in resp.json()["error"]["message"]
    with grpc.insecure_channel(apis["grpc"]) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Chat(chat_pb2.ChatRequest(question=nul), metadata=(("authorization", f"Bearer {keys['app']}"),))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_malformed_grpc_messages_are_rejected_and_the_server_keeps_serving(apis: dict) -> None:
    key = apis["keys"]["app"]
    with grpc.insecure_channel(apis["grpc"]) as channel:
        for method, kind in (("ChatStream", channel.unary_stream), ("Chat", channel.unary_unary)):
            call = kind(f"/kefu.gateway.v1.ChatService/{method}", request_serializer=None, response_deserializer=None)
            for garbage in (b"\xff\xff\xff\xff", b"\x0a\xff\x01", b"\x12\x05" + b"\x80" * 5, bytes(range(256))):
                with pytest.raises(grpc.RpcError) as caught:
                    result = call(garbage, metadata=(("authorization", f"Bearer {key}"),), timeout=10)
                    list(result) if method == "ChatStream" else None
                assert caught.value.code() != grpc.StatusCode.UNKNOWN, caught.value.details()
    assert httpx.get(f"{apis['gateway']}/healthz").status_code == 200


def fuzz_operation(strategy: st.SearchStrategy, base: str, key: str) -> None:
    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))  # issue 14: more than 15
    @given(case=strategy)
    def fuzz(case) -> None:
        response = case.call(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert response.status_code < 500 or response.status_code == 503, (
            case.method, case.path, response.status_code, response.text[:300]
        )  # fmt: skip
        if response.status_code >= 400:
            error = response.json()["error"]
            assert isinstance(error["code"], str) and error["code"] and isinstance(error["message"], str)

    fuzz()


def test_every_documented_operation_survives_schemathesis(apis: dict) -> None:
    """Schemathesis generates valid and invalid requests from each service's own OpenAPI document; every answer
    must be a 4xx (or 503: no engine here) in the one error shape, never a 500."""
    import schemathesis
    from schemathesis import GenerationMode

    targets = [(apis["gateway"], apis["keys"]["admin"]), (apis["feedback"], apis["keys"]["admin"])]
    seen: set[str] = set()
    for base, key in targets:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()
            seen.add(f"{operation.method.upper()} {operation.path}")
            fuzz_operation(operation.as_strategy(generation_mode=GenerationMode.POSITIVE), base, key)
            # An operation without parameters or body has nothing to make invalid.
            with contextlib.suppress(Unsatisfiable):
                fuzz_operation(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), base, key)
    assert {"POST /v1/chat/completions", "POST /v1/flags"} <= seen, seen
    assert httpx.get(f"{apis['gateway']}/healthz").status_code == 200
    assert httpx.get(f"{apis['feedback']}/healthz").status_code == 200
