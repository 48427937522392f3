"""Schemathesis against the ingest service's own OpenAPI document, served for real (uvicorn, PostgreSQL, Tansu):
valid and invalid uploads alike get a 2xx or a 4xx in the one error shape, never a 500."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from libs.common.apikeys import create_key
from libs.common.db import make_engine, make_sessionmaker
from libs.common.settings import KefuSettings
from services.ingest.app import create_app
from services.ingest.settings import Settings
from tests.conftest import free_port

pytestmark = pytest.mark.slow
EXAMPLES = 20


@contextlib.contextmanager
def serve(config: Settings) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=config.ingest_port))
    thread = threading.Thread(target=server.run, name="ingest-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "ingest did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{config.ingest_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def data_key(database_url: str) -> str:
    async def make() -> str:
        engine = make_engine(database_url)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                return (await create_key(session, "data", name="fuzz"))[1]
        finally:
            await engine.dispose()

    return asyncio.run(make())


def test_upload_api_survives_schemathesis(tmp_path, tansu: str, pg_url: str) -> None:  # type: ignore[no-untyped-def]
    import schemathesis
    from schemathesis import GenerationMode

    base_settings = KefuSettings(home=tmp_path / "home", database_url=pg_url, kafka_bootstrap=tansu)
    config = Settings(
        **{**base_settings.model_dump(), "migrate_on_start": False, "ingest_port": free_port(), "log_level": "WARNING"}
    )
    key = data_key(pg_url)
    statuses: list[int] = []
    with serve(config) as base:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        operations = [r.ok() for r in schema.get_all_operations()]
        assert [f"{o.method.upper()} {o.path}" for o in operations] == ["POST /v1/datasets"]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
            @given(case=operations[0].as_strategy(generation_mode=mode))
            def fuzz(case) -> None:  # type: ignore[no-untyped-def]
                response = case.call(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
                statuses.append(response.status_code)
                assert response.status_code < 500, (response.status_code, response.text[:300])
                if response.status_code >= 400:
                    error = response.json()["error"]
                    assert isinstance(error["code"], str) and error["code"] and isinstance(error["message"], str)

            with contextlib.suppress(Unsatisfiable):
                fuzz()
        assert httpx.get(f"{base}/healthz").status_code == 200
    assert len(statuses) > 2 * 15, len(statuses)
