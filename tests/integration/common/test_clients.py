"""Any subscriber can read the lifecycle topics from the embedded broker (real Tansu): librdkafka (confluent-kafka),
aiokafka, and `kefu events tail` for people whose kcat does not work against it (README, "Subscribing")."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka as ck
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from libs.common.events import Topic

TOPICS = [t.value for t in Topic]
ROOT = Path(__file__).resolve().parents[3]


def event_id(value: bytes | None) -> str | None:
    """The event id of a lifecycle event; None for anything else (other suites put poison on the shared topics)."""
    try:
        doc = json.loads(value or b"")
    except ValueError:
        return None
    return doc.get("event_id") if isinstance(doc, dict) else None


async def publish(bootstrap: str, topics: list[str]) -> dict[str, str]:
    """One event per topic with a fresh event id (the broker is shared with other tests): topic → event id."""
    sent = {t: uuid.uuid4().hex for t in topics}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic, event_id in sent.items():
            # ``marker``: a payload field, so the text line of `kefu events tail` shows it too
            envelope = {"event_id": event_id, "schema_version": 1, "occurred_at": "2026-11-30T00:00:00Z"}
            value = {**envelope, "marker": event_id}
            await producer.send_and_wait(topic, json.dumps(value).encode(), key=b"lineage-" + event_id[:8].encode())
    finally:
        await producer.stop()
    return sent


@pytest.fixture(scope="module")
async def published(tansu: str) -> dict[str, str]:
    return await publish(tansu, TOPICS)


def confluent_read(consumer: ck.Consumer, wanted: dict[str, str], timeout: float = 30) -> dict[str, str]:
    """Poll until every wanted (topic, event id) was read; returns what was found."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(wanted) and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        seen = event_id(msg.value())
        if wanted.get(msg.topic()) == seen:
            found[msg.topic()] = seen
    return found


def test_confluent_kafka_assign_reads_every_topic_at_once(tansu: str, published: dict[str, str]) -> None:
    """No consumer group to join: partitions assigned directly, read from the start (≈0.5 s here)."""
    started = time.monotonic()
    consumer = ck.Consumer({"bootstrap.servers": tansu, "group.id": "unused", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(timeout=10)
        consumer.assign(
            [ck.TopicPartition(t, p, ck.OFFSET_BEGINNING) for t in TOPICS for p in metadata.topics[t].partitions]
        )
        assert confluent_read(consumer, published) == published
    finally:
        consumer.close()
    assert time.monotonic() - started < 10


def test_confluent_kafka_group_with_short_session_joins_fast(tansu: str, published: dict[str, str]) -> None:
    """A consumer group (offsets committed on the broker): Tansu completes the join after about half the session
    timeout, so librdkafka's default 45 s takes ~24 s and 2000 ms takes ~2 s (README)."""
    started = time.monotonic()
    consumer = ck.Consumer(
        {
            "bootstrap.servers": tansu,
            "group.id": f"test-confluent-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 500,
        }
    )
    try:
        consumer.subscribe(TOPICS)
        assert confluent_read(consumer, published) == published
        elapsed = time.monotonic() - started
        assert consumer.commit(asynchronous=False)  # group offsets work too
    finally:
        consumer.close()
    assert elapsed < 10, f"group join took {elapsed:.1f}s"


async def test_aiokafka_group_reads_every_topic(tansu: str, published: dict[str, str]) -> None:
    consumer = AIOKafkaConsumer(
        *TOPICS,
        bootstrap_servers=tansu,
        group_id=f"test-aiokafka-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    found: dict[str, str] = {}
    try:
        async with asyncio.timeout(30):
            async for record in consumer:
                if published.get(record.topic) == event_id(record.value):
                    found[record.topic] = published[record.topic]
                    if found == published:
                        break
    finally:
        await consumer.stop()
    assert found == published


@pytest.fixture
def tail_process(tansu: str) -> Iterator:  # type: ignore[type-arg]
    """Start `kefu events tail ARGS…` against the test broker; stopped with SIGINT (Ctrl-C) by the test or here."""
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kefu", "events", "tail", "--bootstrap", tansu, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            # Under pytest-xdist the worker ignores SIGINT and a child inherits that; Ctrl-C must reach the CLI.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def read_lines(stream, until, timeout: float = 30) -> list[str]:  # type: ignore[no-untyped-def]
    """Lines of ``stream`` until ``until(lines)`` holds (read in a thread so a silent process cannot hang us)."""
    lines: list[str] = []
    done = threading.Event()

    def pump() -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))
            if until(lines):
                break
        done.set()

    threading.Thread(target=pump, daemon=True).start()
    done.wait(timeout)
    return lines


def interrupt(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=15)


def test_events_tail_from_beginning_json_reads_every_topic(tail_process, published: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    proc = tail_process("--from-beginning", "--json")  # no TOPIC: every lifecycle topic

    def seen(lines: list[str]) -> dict[str, str]:
        docs = [json.loads(line) for line in lines]
        values = [(d["topic"], d["value"] if isinstance(d["value"], dict) else {}) for d in docs]
        return {t: v["event_id"] for t, v in values if published.get(t) == v.get("event_id")}

    lines = read_lines(proc.stdout, lambda ls: seen(ls) == published)
    assert seen(lines) == published
    doc = json.loads(lines[0])
    assert set(doc) == {"topic", "partition", "offset", "timestamp", "key", "headers", "value"}
    assert interrupt(proc) == 0  # Ctrl-C is the way out, and a clean one


async def test_events_tail_follows_new_events_one_line_each(tansu: str, tail_process) -> None:  # type: ignore[no-untyped-def]
    proc = tail_process(Topic.DEPLOYMENT_LIVE.value, Topic.ENGINE_BUILT.value)
    ready = await asyncio.to_thread(read_lines, proc.stderr, lambda ls: any("following" in line for line in ls))
    assert any("2 topic(s)" in line for line in ready), ready
    sent = await publish(tansu, [Topic.DATASET_READY.value, Topic.ENGINE_BUILT.value, Topic.DEPLOYMENT_LIVE.value])
    mine = {topic: f"marker={event_id}" for topic, event_id in sent.items() if topic != Topic.DATASET_READY}

    def lines_of_mine(lines: list[str]) -> dict[str, str]:  # topic → its line (HH:MM:SS topic field=value …)
        return {line.split()[1]: line for line in lines if any(m in line for m in mine.values())}

    lines = await asyncio.to_thread(read_lines, proc.stdout, lambda ls: len(lines_of_mine(ls)) == len(mine))
    assert await asyncio.to_thread(interrupt, proc) == 0
    assert {topic: mine[topic] in line for topic, line in lines_of_mine(lines).items()} == dict.fromkeys(mine, True)
    assert not any(sent[Topic.DATASET_READY.value] in line for line in lines)  # a topic not asked for
