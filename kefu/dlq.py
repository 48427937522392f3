"""``kefu dlq list|replay TOPIC``: what was dead-lettered and why, and re-publishing it once the cause is fixed.

Replay re-publishes each dead letter's raw body to its original topic with its lineage key and event id. It is
idempotent twice over: the replay tool commits, per dead letter, its DLQ offset in the consumer group
``kefu-dlq-replay`` (so a second ``replay`` sends nothing already sent), and every consumer handles an event id
once (``claim_event``), so even a letter re-sent after a crash between publish and commit is handled once.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from libs.common.events import DeadLetter
    from libs.common.settings import KefuSettings

REPLAY_GROUP = "kefu-dlq-replay"

dlq_app = typer.Typer(help="Dead letters: list them, replay them after a fix.", no_args_is_help=True)


def dlq_topic(topic: str) -> str:
    """``dataset.ready`` and ``dataset.ready.dlq`` both name the dead letters of ``dataset.ready``."""
    return topic if topic.endswith(".dlq") else f"{topic}.dlq"


@dataclass(frozen=True)
class Entry:
    """One record of a DLQ topic: where it is, the dead letter (None if unreadable) and whether it was replayed."""

    partition: int
    offset: int
    letter: DeadLetter | None
    replayed: bool

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"partition": self.partition, "offset": self.offset, "replayed": self.replayed}
        if self.letter is not None:
            doc.update(self.letter.model_dump(mode="json", exclude={"raw"}), event_id=event_id_of(self.letter.raw))
        return doc


def event_id_of(raw: str) -> str | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value.get("event_id") if isinstance(value, dict) and isinstance(value.get("event_id"), str) else None


def _parse(value: bytes | None) -> DeadLetter | None:
    from pydantic import ValidationError

    from libs.common.events import DeadLetter

    try:
        return DeadLetter.model_validate_json(value or b"")
    except ValidationError:
        return None


async def _open(
    bootstrap: str, topic: str, client_options: dict[str, Any] | None = None
) -> tuple[AIOKafkaConsumer, dict[TopicPartition, int]]:
    """A consumer of the replay group assigned every partition of ``topic`` (no group join: nothing rebalances),
    and each partition's end offset now: reading stops there, so letters dead-lettered meanwhile wait."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=REPLAY_GROUP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **(client_options or {}),  # TLS / SASL (libs/common/kafka_security.py)
    )
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        return consumer, (await consumer.end_offsets(tps) if tps else {})
    except BaseException:
        await consumer.stop()
        raise


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    if topic not in await consumer.topics():
        return set()
    return consumer.partitions_for_topic(topic) or set()


async def _committed(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    return await consumer.committed(tp) or 0


async def _records(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]):  # type: ignore[no-untyped-def]
    """Records from each partition's current position up to ``end`` (exclusive), partition by partition."""
    for tp, stop in end.items():
        while await consumer.position(tp) < stop:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for record in batch.get(tp, []):
                if record.offset < stop:
                    yield tp, record


async def list_dead_letters(bootstrap: str, topic: str, client_options: dict[str, Any] | None = None) -> list[Entry]:
    """Every dead letter of ``topic`` still on the broker, oldest first per partition, marked if replayed."""
    consumer, end = await _open(bootstrap, dlq_topic(topic), client_options)
    try:
        committed = {tp: await _committed(consumer, tp) for tp in end}
        await consumer.seek_to_beginning(*end)
        return [
            Entry(tp.partition, rec.offset, _parse(rec.value), rec.offset < committed[tp])
            async for tp, rec in _records(consumer, end)
        ]
    finally:
        await consumer.stop()


async def replay(settings: KefuSettings, topic: str, *, say=print) -> int:  # type: ignore[no-untyped-def]
    """Re-publish the dead letters of ``topic`` not replayed before; returns how many were sent."""
    from aiokafka.structs import OffsetAndMetadata

    from libs.common.broker import make_broker

    source = dlq_topic(topic)
    original = source.removesuffix(".dlq")
    from libs.common.kafka_security import kafka_client_options

    consumer, end = await _open(settings.kafka_bootstrap, source, kafka_client_options(settings))
    broker = make_broker(settings, service="dlq-replay")
    sent = 0
    try:
        await asyncio.wait_for(broker.start(), timeout=10)
        for tp in end:
            consumer.seek(tp, await _committed(consumer, tp))
        async for tp, rec in _records(consumer, end):
            letter = _parse(rec.value)
            if letter is None:
                say(f"skipped {source}[{tp.partition}]@{rec.offset}: not a dead letter")
            else:
                headers = {"content-type": "application/json", "x-kefu-replayed-from": f"{source}:{rec.offset}"}
                if (event_id := event_id_of(letter.raw)) is not None:
                    headers["x-kefu-event-id"] = event_id
                key = letter.key.encode() if letter.key else None
                await broker.publish(letter.raw, topic=letter.topic or original, key=key, headers=headers)
                sent += 1
                say(f"replayed {source}[{tp.partition}]@{rec.offset} → {letter.topic or original} ({event_id})")
            # Committed only after the broker acknowledged the publish: a crash in between re-sends one letter,
            # which consumers then skip by its event id.
            await consumer.commit({tp: OffsetAndMetadata(rec.offset + 1, "")})
    finally:
        await broker.stop()
        await consumer.stop()
    return sent


def _settings() -> KefuSettings:
    from libs.common.settings import KefuSettings

    return KefuSettings()


@dlq_app.command("list")
def list_command(
    topic: Annotated[str, typer.Argument(help="Lifecycle topic (e.g. dataset.ready) or its .dlq topic.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per dead letter.")] = False,
) -> None:
    """Show the dead letters of TOPIC: where, which consumer, after what error, and whether replayed."""
    from libs.common.kafka_security import kafka_client_options

    settings = _settings()
    entries = asyncio.run(list_dead_letters(settings.kafka_bootstrap, topic, kafka_client_options(settings)))
    for entry in entries:
        if as_json:
            typer.echo(json.dumps(entry.as_json(), ensure_ascii=False))
            continue
        letter = entry.letter
        state = "replayed" if entry.replayed else "pending"
        if letter is None:
            typer.echo(f"[{entry.partition}]@{entry.offset} {state} (not a dead letter)")
            continue
        typer.echo(
            f"[{entry.partition}]@{entry.offset} {state} {letter.at:%Y-%m-%d %H:%M:%S} {letter.consumer} "
            f"key={letter.key} event={event_id_of(letter.raw)}: {letter.error.splitlines()[0]}"
        )
    if not as_json:
        pending = sum(not e.replayed for e in entries)
        typer.echo(f"{len(entries)} dead letter(s) on {dlq_topic(topic)}, {pending} not replayed")


@dlq_app.command("replay")
def replay_command(
    topic: Annotated[str, typer.Argument(help="Lifecycle topic (e.g. dataset.ready) or its .dlq topic.")],
) -> None:
    """Re-publish TOPIC's dead letters not replayed before to TOPIC (after fixing what made them fail)."""
    sent = asyncio.run(replay(_settings(), topic, say=typer.echo))
    typer.echo(f"replayed {sent} dead letter(s) to {dlq_topic(topic).removesuffix('.dlq')}")
