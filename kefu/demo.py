"""`kefu demo`: the whole loop on the embedded stack, timed, with a summary (what `make demo` runs).

Stages run as far as the services that exist take them; the summary says which stages are not built yet
instead of pretending.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

from kefu.demo_attach import LIVE_FIX_TIMEOUT_S, attach_missed, attached_after_retraining, until_served
from kefu.eventlog import EventLog
from kefu.questions import ask_all, read_questions, score
from kefu.registry import service_names, service_settings
from kefu.stack import Stack
from libs.common.events import Topic
from libs.common.settings import KefuSettings

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "cloudmax_faq.jsonl"
#: The demo's own questions: the sample's entries in customers' words, and questions it does not answer.
SAMPLE_QUESTIONS = SAMPLE.with_name("cloudmax_questions.jsonl")
#: Demo pace: a new engine is promoted after a few seconds of canary; the agent's flags (an attached wording, a
#: correction) are approved on arrival. Production defaults are slower and stricter (README's configuration table).
DEMO_ENV = {"KEFU_CANARY_SECONDS": "3", "KEFU_FEEDBACK_AUTO_APPROVE": "true"}


def _check_gate(engine: dict[str, Any]) -> None:
    """A failed builder gate means no deployment will follow: say why instead of waiting for it."""
    if not engine.get("passed_gate", True):
        raise RuntimeError(f"engine {engine['engine_id']} failed its quality gate: {engine['quality']}")


async def run_demo(home: Path, kafka_port: int, say, question_sets: list[Path] | None = None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    # The demo process reads the same settings as the services it starts (ports, DB): one KEFU_HOME for all.
    os.environ["KEFU_HOME"] = str(home)
    for key, value in DEMO_ENV.items():
        os.environ.setdefault(key, value)
    # Never by count: the admin releases both flags together (立即发布), so one retraining learns both.
    os.environ["KEFU_FEEDBACK_RELEASE_THRESHOLD"] = "0"
    settings = KefuSettings(home=home)
    summary: dict[str, Any] = {"home": str(home), "services": service_names()}
    events = EventLog()
    async with Stack(settings, kafka_port=kafka_port, say=say) as stack:
        await stack.wait_healthy(timeout=120)
        follower = asyncio.create_task(events.follow(stack.bootstrap))
        try:
            summary.update(await _pipeline(events, say, question_sets or [SAMPLE_QUESTIONS]))
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
    return summary


async def _pipeline(events: EventLog, say, question_sets: list[Path]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    out: dict[str, Any] = {"stages": []}
    ingest_url = service_settings("ingest").endpoints()["http"]
    keys = await _keys(("data", "app", "agent", "admin"))
    async with httpx.AsyncClient(timeout=120, headers={"Authorization": f"Bearer {keys['data']}"}) as client:
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
    _check_gate(payload)
    out["stages"].append("engine.built")
    out["engine_id"] = payload["engine_id"]
    out["agreement"] = payload["quality"].get("agreement")
    out["pipeline_seconds"] = round(at - t0, 1)
    say(
        f"demo: engine {payload['engine_id']} ({payload['precision']}) loaded in Triton as "
        f"{payload['triton_model']} v{payload['triton_version']}, gate agreement {out['agreement']}"
    )
    if "gateway" not in service_names():
        out["missing"] = ["gateway", "feedback"]
        return out
    at, _, _ = await events.wait_for({Topic.DEPLOYMENT_LIVE.value}, {"engine_id": out["engine_id"]})
    out["stages"].append("deployment.live")
    out["pipeline_seconds"] = round(at - t0, 1)
    say(f"demo: engine {out['engine_id']} live after {out['pipeline_seconds']}s (dataset.ready → deployment.live)")
    out["answers"] = [await _ask(q, keys["app"], say) for q in _sample_questions()]
    out.update(await _question_sets(question_sets, keys["app"], say))
    out.update(await _two_turn(keys["app"], say))
    if "feedback" not in service_names():
        out["missing"] = ["feedback"]
        return out
    wrong = next(iter(out["question_sets"].values()))["wrong"]  # the first set's
    out.update(await attach_missed(question_sets[0], wrong, dataset_id, keys, say))
    out.update(await _feedback_loop(events, out, keys, say))
    out["attached_learned"] = await attached_after_retraining(out.get("attach", {}), keys["app"])
    out["missing"] = []
    return out


async def _feedback_loop(events: EventLog, out: dict[str, Any], keys: dict[str, str], say) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """An agent corrects one answer; the correction is approved, released (with the attached wording), trained,
    built and goes live."""
    from libs.datasets.cleaning import normalize_text

    flagged = out["answers"][0]
    correction = f"{flagged['answer'].rstrip('。')}。如仍有疑问，请拨打客服热线400-820-8820。"
    feedback_url = service_settings("feedback").endpoints()["http"]
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as client:
        resp = await client.post(
            f"{feedback_url}/v1/flags",
            headers={"Authorization": f"Bearer {keys['agent']}"},
            json={"answer_id": flagged["answer_id"], "reason": "should point to the hotline", "correction": correction},
        )
    resp.raise_for_status()
    say(f"demo: agent flagged answer {flagged['answer_id']} with a correction (flag {resp.json().get('flag_id')})")
    fixed = normalize_text(correction)
    live, served = await until_served(
        flagged["question"], lambda a: normalize_text(a["answer"]) == fixed, keys["app"], started
    )
    as_is = bool(served.get("verbatim"))
    if live is None:
        say(f"demo: the engine did not yet answer with the correction {LIVE_FIX_TIMEOUT_S}s after approval")
    else:
        how = "as approved: the live engine does not follow edited references" if as_is else "by the live engine"
        say(f"demo: approved correction served {live:.1f}s after approval, {how} (no retraining)")
    async with httpx.AsyncClient(timeout=120) as client:
        resp = await client.post(f"{feedback_url}/v1/releases", headers={"Authorization": f"Bearer {keys['admin']}"})
    resp.raise_for_status()
    if not (release := resp.json()).get("released") or not release.get("published", True):
        raise RuntimeError(f"the admin's release published no new dataset: {release}")
    _, _, ds = await events.wait_for({Topic.DATASET_READY.value}, {"dataset_id": release["dataset_id"]})
    say(f"demo: admin released the approved flags as dataset {ds['dataset_id']} (parent {out['dataset_id']})")
    _, topic, model = await events.wait_for(
        {Topic.MODEL_TRAINED.value, Topic.MODEL_FAILED.value}, {"dataset_id": ds["dataset_id"]}
    )
    if topic == Topic.MODEL_FAILED.value:
        raise RuntimeError(f"retraining failed: {model['reason']}")
    _, _, engine = await events.wait_for({Topic.ENGINE_BUILT.value}, {"model_id": model["model_id"]})
    _check_gate(engine)
    at, topic, outcome = await events.first_of(
        (Topic.DEPLOYMENT_LIVE.value, {"engine_id": engine["engine_id"], "traffic_percent": 100.0}),
        (Topic.DEPLOYMENT_ROLLED_BACK.value, {"engine_id": engine["engine_id"]}),
    )
    if topic == Topic.DEPLOYMENT_ROLLED_BACK.value:
        raise RuntimeError(f"the corrected engine {engine['engine_id']} was rolled back: {outcome['reason']}")
    say(f"demo: corrected engine {engine['engine_id']} promoted to 100% after {at - started:.1f}s")
    reason = await _deployment_reason(engine["engine_id"])
    say(f"demo: canary verdict: {reason}")
    again = await _ask(flagged["question"], keys["app"], say)
    return {
        "live_fix_seconds": round(live, 1) if live is not None else None,
        # "approved text": served as is (the engine follows edited references too rarely); "model": generated
        "live_fix_by": None if live is None else "approved text" if as_is else "model",
        "feedback_seconds": round(at - started, 1),
        "feedback_dataset_id": ds["dataset_id"],
        "feedback_engine_id": engine["engine_id"],
        "canary_verdict": reason,
        "corrected_answer": again["answer"],
        "feedback_fixed": normalize_text(again["answer"]) == normalize_text(correction),
        "stages": [
            *out["stages"],
            "feedback.flagged",
            "dataset.ready",
            "model.trained",
            "engine.built",
            "deployment.live",
        ],
    }


async def _keys(roles: tuple[str, ...]) -> dict[str, str]:
    """Demo API keys, created straight in the stack's database (what `kefu keys create` does)."""
    from libs.common.apikeys import create_key
    from libs.common.db import open_database

    async with open_database(service_settings("gateway"), migrate=False) as sessions, sessions() as s, s.begin():
        return {role: (await create_key(s, role, name=f"demo-{role}"))[1] for role in roles}


async def _deployment_reason(engine_id: str) -> str | None:
    """Why the rollout decided as it did (the canary's evidence, in words), from the deployments table."""
    from sqlalchemy import select

    from libs.common.db import open_database
    from libs.common.tables import Deployment

    async with open_database(service_settings("gateway"), migrate=False) as sessions, sessions() as session:
        return await session.scalar(
            select(Deployment.reason).where(Deployment.engine_id == engine_id).order_by(Deployment.id.desc()).limit(1)
        )


async def _ask(question: str, key: str, say) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """One streamed answer through the gateway's gRPC API, printed as it arrives."""
    import grpc

    from proto.kefu.gateway.v1 import chat_pb2, chat_pb2_grpc

    target = service_settings("gateway").endpoints()["grpc"]
    text, answer_id = "", ""
    say(f"Q: {question}")
    async with grpc.aio.insecure_channel(target) as channel:
        stream = chat_pb2_grpc.ChatServiceStub(channel).ChatStream(
            chat_pb2.ChatRequest(question=question), metadata=(("authorization", f"Bearer {key}"),)
        )
        async for message in stream:
            text += message.delta
            answer_id = message.answer_id or answer_id
    say(f"A: {text}  [{answer_id}]")
    return {"question": question, "answer": text, "answer_id": answer_id}


async def _question_sets(paths: list[Path], key: str, say) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Ask each question set through the gateway; the first set's figures go to the summary's top level."""
    http = service_settings("gateway").endpoints()["http"] + "/v1"
    model = service_settings("gateway").triton_model_name
    results: dict[str, Any] = {}
    for path, label in zip(paths, set_labels(paths), strict=True):
        questions = read_questions(path)
        r = results[label] = score(questions, await ask_all(http, key, model, questions))
        say(
            f"demo: {label}: {r['in_scope']} in-scope answered right {r['paraphrase_accuracy']}, handed off "
            f"{r['handoff_in_scope']}; {r['out_of_scope']} out-of-scope handed off {r['handoff_out_of_scope']}"
        )
    first = next(iter(results.values()), {})
    return {
        "question_sets": results,
        **{k: first.get(k) for k in ("paraphrase_accuracy", "handoff_in_scope", "handoff_out_of_scope")},
    }


def set_labels(paths: list[Path]) -> list[str]:
    """Each question set's key in the summary: its file name, with as many of its folders as tell it from the
    others' (grounding/paraphrases.jsonl and grounding_dev/paraphrases.jsonl). A set given twice is refused."""
    full = [p.resolve() for p in paths]
    if twice := sorted({str(p) for p in full if full.count(p) > 1}):
        raise ValueError(f"a question set is given twice: {', '.join(twice)}")

    def label(p: Path) -> str:
        depth = 1
        while any(q != p and q.parts[-depth:] == p.parts[-depth:] for q in full):
            depth += 1
        return "/".join(p.parts[-depth:])

    return [label(p) for p in full]


async def _two_turn(key: str, say) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The hand-made two-turn conversations' follow-ups, answered with their conversation (kefu.conversations_eval)."""
    from kefu.conversations_eval import demo_figures

    gateway = service_settings("gateway")
    return await demo_figures(gateway.endpoints()["http"] + "/v1", key, gateway.triton_model_name, say)


def _sample_questions(n: int = 3) -> list[str]:
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [rows[i]["question"] for i in range(0, len(rows), max(1, len(rows) // n))][:n]
