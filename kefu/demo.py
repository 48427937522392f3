"""`kefu demo`: the whole loop on the embedded stack, timed, with a summary (what `make demo` runs).

Stages run as far as the services that exist take them; the summary says which stages are not built yet
instead of pretending.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from kefu.registry import service_names, service_settings
from kefu.stack import Stack
from libs.common.events import Topic
from libs.common.settings import KefuSettings

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "cloudmax_faq.jsonl"
STAGE_TIMEOUT_S = 600


@dataclass
class EventLog:
    """Every lifecycle event seen on the broker, with the monotonic time it arrived."""

    seen: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def follow(self, bootstrap: str) -> None:
        consumer = AIOKafkaConsumer(
            *(t.value for t in Topic), bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            async for record in consumer:
                async with self.changed:
                    self.seen.append((time.monotonic(), record.topic, json.loads(record.value)))
                    self.changed.notify_all()
        finally:
            await consumer.stop()

    async def wait_for(self, topics: set[str], match: dict[str, str], timeout: float = STAGE_TIMEOUT_S) -> tuple:
        def found() -> tuple | None:
            for at, topic, payload in self.seen:
                if topic in topics and all(payload.get(k) == v for k, v in match.items()):
                    return at, topic, payload
            return None

        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: found() is not None)
        return found()  # type: ignore[return-value]


async def run_demo(home: Path, kafka_port: int, say) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    settings = KefuSettings(home=home)
    summary: dict[str, Any] = {"home": str(home), "services": service_names()}
    events = EventLog()
    async with Stack(settings, kafka_port=kafka_port, say=say) as stack:
        await stack.wait_healthy(timeout=120)
        follower = asyncio.create_task(events.follow(stack.bootstrap))
        try:
            summary.update(await _pipeline(events, say))
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
    return summary


async def _pipeline(events: EventLog, say) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    out: dict[str, Any] = {"stages": []}
    ingest_url = service_settings("ingest").endpoints()["http"]
    async with httpx.AsyncClient(timeout=120) as client:
        with SAMPLE.open("rb") as fh:
            resp = await client.post(f"{ingest_url}/v1/datasets", files={"file": (SAMPLE.name, fh)})
    resp.raise_for_status()
    dataset_id = resp.json()["dataset_id"]
    t0, _, _ = await events.wait_for({Topic.DATASET_READY.value}, {"dataset_id": dataset_id})
    out["dataset_id"] = dataset_id
    out["stages"].append("dataset.ready")
    say(f"demo: dataset {dataset_id} ready ({resp.json()['card']['counts']})")

    if "trainer" not in service_names():
        out["missing"] = ["trainer"]
        return out
    at, topic, payload = await events.wait_for(
        {Topic.MODEL_TRAINED.value, Topic.MODEL_FAILED.value}, {"dataset_id": dataset_id}
    )
    if topic == Topic.MODEL_FAILED.value:
        raise RuntimeError(f"training failed: {payload['reason']}")
    out["stages"].append("model.trained")
    out["model_id"] = payload["model_id"]
    out["train_exact_match"] = payload["metrics"].get("train_exact_match")
    out["eval_exact_match"] = payload["metrics"].get("eval_exact_match")
    out["pipeline_seconds"] = round(at - t0, 1)
    say(
        f"demo: model {payload['model_id']} trained in {at - t0:.1f}s, train exact match {out['train_exact_match']:.3f}"
    )
    if "builder" not in service_names():
        out["missing"] = ["builder", "gateway", "feedback"]
        return out
    at, _, payload = await events.wait_for({Topic.ENGINE_BUILT.value}, {"model_id": out["model_id"]})
    out["stages"].append("engine.built")
    out["engine_id"] = payload["engine_id"]
    out["agreement"] = payload["quality"].get("agreement")
    out["pipeline_seconds"] = round(at - t0, 1)
    say(
        f"demo: engine {payload['engine_id']} ({payload['precision']}) loaded in Triton as "
        f"{payload['triton_model']} v{payload['triton_version']}, gate agreement {out['agreement']}"
    )
    out["answers"] = await _ask_triton(payload["triton_model"], str(payload["triton_version"]), say)
    out["missing"] = [s for s in ("gateway", "feedback") if s not in service_names()]
    return out


async def _ask_triton(model: str, version: str, say) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """Until the gateway exists, ask Triton directly (same streaming contract the gateway uses)."""
    import tritonclient.grpc.aio as aioclient

    from libs.common.triton_stream import stream_answer

    builder = service_settings("builder")
    client = aioclient.InferenceServerClient(builder.triton_grpc_url)
    answers = []
    try:
        for question in _sample_questions():
            text = ""
            say(f"Q: {question}")
            async for delta in stream_answer(client, model, question, version=version):
                text += delta.text
            say(f"A: {text}")
            answers.append({"question": question, "answer": text})
    finally:
        await client.close()
    return answers


def _sample_questions(n: int = 3) -> list[str]:
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [rows[i]["question"] for i in range(0, len(rows), max(1, len(rows) // n))][:n]


def print_summary(summary: dict[str, Any], say) -> None:  # type: ignore[no-untyped-def]
    rows = [
        ("stages reached", " → ".join(summary.get("stages", []))),
        ("dataset", summary.get("dataset_id", "-")),
        ("model", summary.get("model_id", "-")),
        ("engine", summary.get("engine_id", "-")),
        ("train exact match", summary.get("train_exact_match", "-")),
        ("engine vs trained model agreement", summary.get("agreement", "-")),
        ("eval exact match (unseen questions)", summary.get("eval_exact_match", "-")),
        ("pipeline seconds (dataset.ready → last stage)", summary.get("pipeline_seconds", "-")),
        ("not built yet", ", ".join(summary.get("missing", [])) or "nothing"),
        ("artifacts", summary.get("home", "-")),
    ]
    width = max(len(k) for k, _ in rows)
    say("")
    for k, v in rows:
        say(f"{k:<{width}}  {v}")
