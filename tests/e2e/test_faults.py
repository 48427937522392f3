"""kill -9 each process in turn while it is busy: the supervisor restarts it and the loop goes on.

The trainer (killed while training), then the broker with its store (after ``dataset.ready``, before
``engine.built``), then the builder (killed while building): the loop still reaches ``deployment.live`` with exactly
one ``model.trained`` and one ``engine.built`` for the dataset — the interrupted jobs were retried, the broker's
events kept, nothing lost or duplicated. Then the gateway (killed during 10 streamed answers: each client got a
complete answer or an error, never a silently cut one; it answers again after its restart), the feedback service
(killed right after accepting a flag: the flag is released exactly once) and ingest (killed holding half an upload:
the client got an error, nothing half-stored, the same upload afterwards changes nothing). The stack runs on
PostgreSQL, and after the first three kills the test reads the state they left: one job row per stage, done (the
training on its second attempt), one model and one engine row, one Triton version, one finished and registered
MLflow run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from kefu.demo import SAMPLE
from tests.conftest import free_port
from tests.integration.reliability.midflight import (
    kill_broker,
    streams_cut_by_a_gateway_kill,
    upload_cut_by_an_ingest_kill,
)
from tests.integration.test_stack import running_stack, stack_env, status

pytestmark = pytest.mark.slow
STAGE_TIMEOUT = 420
FAST_TRAINING = """\
passes_per_entry: 6
min_examples: 400
paraphrase_probes: 8
hotfix_probes: 2
gate_min: {train_exact_match: null, regression_exact_match: null, paraphrase_exact_match: null}
gate_max: {handoff_rate_in_scope: null}
"""


def wait_restarted(env: dict[str, str], name: str, old_pid: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = status(env)[name]
        if now["pid"] != old_pid and now["state"] == "running":
            return
        time.sleep(0.3)
    pytest.fail(f"{name} was not restarted within {timeout}s")


def serves_again(url: str, timeout: float = 60) -> None:
    """A restarted process is "running" before it listens: poll its health endpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer within {timeout}s")


def kill(env: dict[str, str], name: str) -> None:
    pid = status(env)[name]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_restarted(env, name, pid)


def kefu(env: dict[str, str], *args: str, retry_for: float = 0) -> str:
    """Run a kefu command; retried while a just-restarted service is still starting. Returns its last line."""
    deadline = time.monotonic() + retry_for
    while True:
        proc = subprocess.run(
            [sys.executable, "-m", "kefu", *args], env=env, capture_output=True, text=True, timeout=60
        )
        if proc.returncode == 0:
            return proc.stdout.strip().splitlines()[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"kefu {args[0]} failed: {proc.stdout[-1000:]}{proc.stderr[-1000:]}")
        time.sleep(1)


def ready_datasets_with_flag(bootstrap: str, flag_id: str, timeout: float) -> list[dict]:
    async def run() -> list[dict]:
        consumer = AIOKafkaConsumer("dataset.ready", bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        found: list[dict] = []
        try:
            async with asyncio.timeout(timeout):
                while not found:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        found += [p for p in map(json.loads, (r.value for r in records)) if flag_id in p["flag_ids"]]
            await asyncio.sleep(3)  # a duplicate release would follow within the outbox poll
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [p for p in map(json.loads, (r.value for r in records)) if flag_id in p["flag_ids"]]
            return found
        finally:
            await consumer.stop()

    return asyncio.run(run())


def kill_when_logged(env: dict[str, str], name: str, marker: str, timeout: float) -> None:
    """SIGKILL service ``name`` as soon as its log shows ``marker`` (i.e. mid-job)."""
    log = Path(env["KEFU_HOME"]) / "logs" / f"{name}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and marker in log.read_text(errors="replace"):
            os.kill(status(env)[name]["pid"], signal.SIGKILL)
            return
        time.sleep(0.2)
    pytest.fail(f"{name} never logged {marker!r} within {timeout}s")


async def lifecycle(bootstrap: str, dataset_id: str, timeout: float) -> list[tuple[str, dict]]:
    """Every lifecycle event of the dataset's lineage, until its engine is live."""
    topics = ["model.trained", "model.failed", "engine.built", "deployment.live"]
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen: list[tuple[str, dict]] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    seen += [(r.topic, json.loads(r.value)) for r in records]
                mine = [p for t, p in seen if p.get("dataset_id") == dataset_id]
                if any(t == "deployment.live" and p.get("dataset_id") == dataset_id for t, p in seen) and mine:
                    await asyncio.sleep(3)  # a duplicate would follow within the outbox poll: give it the chance
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        seen += [(r.topic, json.loads(r.value)) for r in records]
                    return seen
    finally:
        await consumer.stop()


@pytest.mark.timeout(900)
def test_services_killed_mid_pipeline_are_restarted_and_the_loop_completes_once(
    tmp_path: Path, fresh_pg_url: str
) -> None:
    env = stack_env(tmp_path / "home")
    port = free_port()
    env["KEFU_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{port}"  # for `kefu ingest`; `kefu up` passes it to its children
    env.update(KEFU_FEEDBACK_AUTO_APPROVE="true", KEFU_FEEDBACK_RELEASE_THRESHOLD="1")
    # A killed runner's job is taken over once its lease expires: a short lease keeps the test to seconds per kill.
    env["KEFU_JOB_LEASE_SECONDS"] = "6"
    # What is under test is recovery, not answer quality: a short training budget (still long enough to be killed
    # mid-run) and no quality floors, so the loop costs seconds of CPU, not the demo's minutes.
    config = tmp_path / "train.yaml"
    config.write_text(FAST_TRAINING, encoding="utf-8")
    env.update(KEFU_TRAINER_CONFIG=str(config), KEFU_BUILDER_MAX_QUALITY_DROP="1", KEFU_BUILDER_MIN_REGRESSION="0")
    # On PostgreSQL, as in production (a database of its own: other suites' runtimes would claim its jobs).
    env["KEFU_DATABASE_URL"] = fresh_pg_url
    run_faults(env, port, tmp_path)


def after_recovery(env: dict[str, str], dataset_id: str, model_id: str) -> None:
    """Not only the events: the rows, job attempts, Triton versions and MLflow runs the kills left behind."""
    home = Path(env["KEFU_HOME"])

    async def rows() -> tuple[list, int, int]:
        conn = await asyncpg.connect(env["KEFU_DATABASE_URL"].replace("+asyncpg", ""))
        try:
            jobs = await conn.fetch(
                "SELECT kind, key, status, attempts FROM jobs WHERE key = ANY($1)", [dataset_id, model_id]
            )
            models = await conn.fetchval("SELECT count(*) FROM models WHERE dataset_id = $1", dataset_id)
            engines = await conn.fetchval("SELECT count(*) FROM engines WHERE model_id = $1", model_id)
            return [dict(j) for j in jobs], models, engines
        finally:
            await conn.close()

    jobs, models, engines = asyncio.run(rows())
    by_kind = {j["kind"]: j for j in jobs}
    # Each killed job was taken over and finished: one row, done, a second attempt — not a second job.
    assert sorted(by_kind) == ["build", "train"] and len(jobs) == 2, jobs
    assert all(j["status"] == "done" for j in jobs) and by_kind["train"]["attempts"] == 2, jobs
    assert models == 1 and engines == 1, (models, engines)
    versions = [d for d in (home / "triton" / "repository" / "kefu-chat").iterdir() if d.name.isdigit()]
    assert len(versions) == 1, versions  # the interrupted build left no half-written version behind
    with sqlite3.connect(home / "mlflow.db") as mlflow:
        finished = mlflow.execute("SELECT count(*) FROM runs WHERE status = 'FINISHED'").fetchone()[0]
        registered = mlflow.execute("SELECT count(*) FROM model_versions").fetchone()[0]
    assert finished == 1 and registered == 1, (finished, registered)  # the killed attempt registered nothing


def run_faults(env: dict[str, str], port: int, tmp_path: Path) -> None:
    with running_stack(env, port):
        ingest = subprocess.run(
            [sys.executable, "-m", "kefu", "ingest", str(SAMPLE)], env=env, capture_output=True, text=True, timeout=120
        )
        assert ingest.returncode == 0, ingest.stdout[-2000:] + ingest.stderr[-2000:]
        card = json.loads(next(p for p in (Path(env["KEFU_HOME"]) / "datasets").glob("*/card.json")).read_text())
        dataset_id = card["dataset_id"]

        trainer_pid = status(env)["trainer"]["pid"]
        kill_when_logged(env, "trainer", "progress", timeout=180)
        assert kill_broker(env) == ["kafka", "kafka-store"]  # the broker loses nothing it acknowledged
        builder_pid = status(env)["builder"]["pid"]
        kill_when_logged(env, "builder", "queued build of model", timeout=STAGE_TIMEOUT)

        events = asyncio.run(lifecycle(f"127.0.0.1:{port}", dataset_id, timeout=STAGE_TIMEOUT))
        trained = [p for t, p in events if t == "model.trained" and p["dataset_id"] == dataset_id]
        assert len(trained) == 1, trained
        built = [p for t, p in events if t == "engine.built" and p["model_id"] == trained[0]["model_id"]]
        assert len(built) == 1, built
        assert not [p for t, p in events if t == "model.failed" and p["dataset_id"] == dataset_id]
        after_recovery(env, dataset_id, trained[0]["model_id"])
        now = status(env)
        assert now["trainer"]["pid"] != trainer_pid and now["builder"]["pid"] != builder_pid

        env["KEFU_API_KEY"] = kefu(env, "keys", "create", "--role", "app")
        questions = [json.loads(line)["question"] for line in SAMPLE.read_text(encoding="utf-8").splitlines()][:10]
        streams = streams_cut_by_a_gateway_kill(env, env["KEFU_API_KEY"], questions)
        print(f"gateway killed during 10 streamed answers: {streams}")
        assert streams["truncated"] == 0 and streams["complete"] + streams["error"] == 10, streams
        last = kefu(env, "chat", "如何注册CloudMax账号？", "--max-tokens", "8", retry_for=60)
        assert last.startswith("answer_id: "), last
        answer_id = last.removeprefix("answer_id: ")
        agent = kefu(env, "keys", "create", "--role", "agent")
        flag = httpx.post(
            f"http://127.0.0.1:{env['KEFU_FEEDBACK_PORT']}/v1/flags",
            headers={"Authorization": f"Bearer {agent}"},
            json={"answer_id": answer_id, "reason": "kill test", "correction": "请拨打客服热线400-820-8820。"},
            timeout=30,
        )
        assert flag.status_code == 201, flag.text
        kill(env, "feedback")  # right after the flag was accepted: it must still be released, once
        released = ready_datasets_with_flag(f"127.0.0.1:{port}", flag.json()["flag_id"], timeout=90)
        assert len(released) == 1, released

        cards = sorted((Path(env["KEFU_HOME"]) / "datasets").glob("*/card.json"))
        data_key = kefu(env, "keys", "create", "--role", "data")
        assert upload_cut_by_an_ingest_kill(env, data_key, SAMPLE).startswith("error ")
        serves_again(f"http://127.0.0.1:{env['KEFU_INGEST_PORT']}/healthz")
        with SAMPLE.open("rb") as fh:
            again = httpx.post(
                f"http://127.0.0.1:{env['KEFU_INGEST_PORT']}/v1/datasets",
                headers={"Authorization": f"Bearer {data_key}"}, files={"file": (SAMPLE.name, fh)}, timeout=60,
            )  # fmt: skip
        assert again.status_code == 201 and again.json()["dataset_id"] == dataset_id, again.text
        assert again.json()["published"] is False  # stored once already: no second dataset.ready
        assert sorted((Path(env["KEFU_HOME"]) / "datasets").glob("*/card.json")) == cards
        assert all(s["state"] == "running" for s in status(env).values())
