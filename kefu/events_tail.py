"""``kefu events tail [TOPIC…] [--from-beginning] [--json]``: one line per lifecycle event, until Ctrl-C.

For people without a Kafka client that works against the embedded broker (Debian's kcat, librdkafka 2.0.2, does
not: see the README). It reads with aiokafka and NO consumer group: every partition is assigned directly, so it
prints from the first poll (a group join waits on the session timeout), commits nothing and never takes
partitions away from a service's consumers.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from aiokafka import ConsumerRecord

events_app = typer.Typer(help="Lifecycle events on the broker, for any subscriber.", no_args_is_help=True)


def record_json(record: ConsumerRecord) -> dict[str, Any]:
    """A record as one JSON object: where it is, its key, headers and payload (parsed when it is JSON)."""
    value: Any
    try:
        value = json.loads(record.value) if record.value is not None else None
    except ValueError:
        value = record.value.decode("utf-8", "replace")
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(timespec="milliseconds"),
        "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
        "headers": {k: v.decode("utf-8", "replace") for k, v in (record.headers or ())},
        "value": value,
    }


def record_line(record: ConsumerRecord) -> str:
    """The console line of `kefu up` (topic, then the payload's own fields) prefixed with the record's time."""
    from kefu.stack import format_event

    at = datetime.fromtimestamp(record.timestamp / 1000, UTC).strftime("%H:%M:%S")
    return f"{at} {format_event(record.topic, record.value or b'')}"


async def tail(
    bootstrap: str,
    topics: list[str],
    *,
    from_beginning: bool = False,
    as_json: bool = False,
    say: Callable[[str], None] = print,
    note: Callable[[str], None] = lambda _line: None,
    client_options: dict[str, Any] | None = None,
) -> None:
    """Print every event on ``topics`` (new ones only unless ``from_beginning``) until cancelled; ``note`` hears
    once when reading starts (the CLI writes it to stderr, so stdout carries events only)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **(client_options or {})
    )
    await consumer.start()
    try:
        known = await consumer.topics()
        missing = [t for t in topics if t not in known]
        if missing:
            raise typer.BadParameter(f"no such topic on {bootstrap}: {', '.join(missing)}")
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        start = "the oldest event" if from_beginning else "new events"
        note(f"following {len(topics)} topic(s), {len(tps)} partition(s) on {bootstrap} from {start}; Ctrl-C stops")
        async for record in consumer:
            say(json.dumps(record_json(record), ensure_ascii=False) if as_json else record_line(record))
    finally:
        await consumer.stop()


@events_app.command("tail")
def tail_command(
    topics: Annotated[
        list[str] | None,
        typer.Argument(metavar="TOPIC", help="Topics to follow (default: every lifecycle topic, no .dlq)."),
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest event kept, not at new ones.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per event: topic, partition, offset, key, headers, value.")
    ] = False,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers (default $KEFU_KAFKA_BOOTSTRAP).")
    ] = None,
) -> None:
    """Print one line per event on TOPIC… as it arrives, until Ctrl-C."""
    from libs.common.events import Topic
    from libs.common.kafka_security import kafka_client_options
    from libs.common.settings import KefuSettings

    names = topics or [t.value for t in Topic]
    settings = KefuSettings()
    servers = bootstrap or settings.kafka_bootstrap

    def say(line: str) -> None:
        print(line, flush=True)  # flushed per line: a pipe (| grep, | jq) sees each event at once

    def note(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        options = kafka_client_options(settings)  # TLS/SASL as the services use them
        asyncio.run(
            tail(
                servers, names, from_beginning=from_beginning, as_json=as_json, say=say, note=note,
                client_options=options,
            )
        )  # fmt: skip
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except BrokenPipeError:  # `| head`: the reader has gone; leave quietly, without a flush error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
