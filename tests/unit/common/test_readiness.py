"""Live is not ready: /readyz answers 503 while a service warms up, so `kefu up` and the demo wait for it."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from libs.common.http import install_common


def test_readyz_follows_the_warm_up_flag_while_healthz_stays_up() -> None:
    app = FastAPI()
    install_common(app, service="trainer")
    client = TestClient(app)
    assert client.get("/readyz").status_code == 200  # a service without a warm-up is ready once it serves

    app.state.ready = False
    warming = client.get("/readyz")
    assert warming.status_code == 503 and warming.json() == {"service": "trainer", "status": "warming up"}
    assert client.get("/healthz").status_code == 200

    app.state.ready = True
    assert client.get("/readyz").json()["status"] == "ready"
