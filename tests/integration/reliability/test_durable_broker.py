"""`kefu up`'s broker keeps its events: Tansu on S3 (SeaweedFS under $KEFU_HOME/broker), the real processes.

Published and acknowledged messages and a consumer group's committed offset survive ``kill -9`` of the broker and of
its store together (the supervisor restarts both), and a whole new stack on the same home finds them again."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import TopicPartition

from kefu.stack import Stack
from kefu.tansu import create_topics, wait_port
from libs.common.settings import KefuSettings
from tests.conftest import free_port

TOPIC = "durability.check"
GROUP = "durability-readers"


def stack(home: Path, port: int) -> Stack:
    # No services (only=[]): the broker, its store and the supervisor are what is under test.
    return Stack(KefuSettings(home=home, database_url=None), kafka_port=port, only=[], say=lambda _: None)


async def publish(bootstrap: str, numbers: range) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in numbers:
            await producer.send_and_wait(TOPIC, f"m{i}".encode(), key=b"one-partition")
    finally:
        await producer.stop()


async def read(bootstrap: str, want: int, timeout: float, commit: bool) -> list[bytes]:
    """Up to ``want`` messages as group GROUP, from its committed offset; commits what it read when asked."""
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=GROUP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    got = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300, max_records=want - len(got))
            got += [r for records in batches.values() for r in records]
        if commit and got:
            await consumer.commit({TopicPartition(TOPIC, got[-1].partition): got[-1].offset + 1})
    finally:
        await consumer.stop()
    return [r.value for r in got]


async def read_once_up(bootstrap: str, want: int, timeout: float) -> list[bytes]:
    """``read`` (committing) once the restarted broker serves again. After kill -9 the store answers 500 for a few
    seconds, and the broker drops its connections meanwhile (seen once under a loaded full run), so a refused
    bootstrap is retried. A failed attempt commits nothing, so a retry cannot hide a message read twice."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await read(bootstrap, want, timeout=max(1.0, deadline - time.monotonic()), commit=True)
        except KafkaConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def restarted(st: Stack, name: str, old_pid: int, timeout: float = 30) -> None:
    child = next(c for c in st.children if c.name == name)
    async with asyncio.timeout(timeout):
        while child.proc is None or child.proc.pid == old_pid or child.state != "running":
            await asyncio.sleep(0.1)


@pytest.mark.timeout(180)
async def test_messages_and_group_offsets_survive_kill_9_of_broker_and_store(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    bootstrap = f"127.0.0.1:{port}"
    async with stack(home, port) as st:
        assert {c.name: c.kind for c in st.children} == {"kafka-store": "storage", "kafka": "broker"}
        await create_topics(bootstrap, [TOPIC], partitions=1)
        await publish(bootstrap, range(20))
        assert await read(bootstrap, 10, timeout=30, commit=True) == [f"m{i}".encode() for i in range(10)]

        pids = {c.name: c.proc.pid for c in st.children}
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)  # no flush, no goodbye: what was acknowledged must already be stored
        for name, pid in pids.items():
            await restarted(st, name, pid)
        await wait_port("127.0.0.1", port, timeout=30)  # "running" is set at launch, before it listens
        # The rest, once each: the group resumes at its committed offset, nothing lost, nothing read twice.
        assert await read_once_up(bootstrap, 10, timeout=60) == [f"m{i}".encode() for i in range(10, 20)]
        await publish(bootstrap, range(20, 21))  # the restarted broker takes new writes too

    config = home / "broker" / "store.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # it holds the store's secret key

    # A new `kefu up` on the same home (another Kafka port): the topic, its messages and the offset are there.
    async with stack(home, free_port()) as st:
        assert await read(st.bootstrap, 1, timeout=60, commit=False) == [b"m20"]  # the one after the commit
