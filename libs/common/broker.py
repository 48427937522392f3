"""FastStream KafkaBroker factory and the dead-letter policy every consumer shares.

Every broker carries FastStream's OpenTelemetry middleware (trace context in Kafka headers, a span per publish and
per handled message) and Prometheus middleware (events received/processed/published and handler latency per
topic, in the default registry that ``/metrics`` serves), around the dead-letter middleware.

Idempotence is off: Tansu (and stock aiokafka's InitProducerId v0) rejects it. Handlers are idempotent instead
(``libs.common.outbox.claim_event``), and producing after a DB write goes through the outbox.
"""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import Any

from faststream import BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from prometheus_client import REGISTRY

from libs.common.events import DeadLetter, Event
from libs.common.settings import KefuSettings
from libs.common.telemetry import METRICS_PREFIX, configure_tracing, record_dead_letter

log = logging.getLogger("kefu.broker")


class DeadLetterMiddleware(BaseMiddleware):
    """Any message a handler cannot parse, validate or handle goes to ``<topic>.dlq`` with the error.

    The message is then acknowledged so the consumer keeps going; operators can replay it from the DLQ.
    """

    def __init__(self, msg: Any, /, *, context: Any, consumer: str) -> None:
        super().__init__(msg, context=context)
        self.consumer = consumer

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        try:
            return await call_next(msg)
        except Exception as exc:  # noqa: BLE001 - setting aside ANY failure is the point of a DLQ
            await send_to_dlq(self.context.broker, msg, exc, consumer=self.consumer)
            return None


async def send_to_dlq(broker: KafkaBroker, msg: StreamMessage[Any], exc: BaseException, *, consumer: str) -> None:
    raw = msg.raw_message
    topic = getattr(raw, "topic", "") or ""
    body = msg.body.decode("utf-8", errors="replace") if isinstance(msg.body, bytes) else str(msg.body)
    key = raw.key.decode("utf-8", errors="replace") if getattr(raw, "key", None) else None
    error = f"{type(exc).__name__}: {exc}"
    letter = DeadLetter(
        topic=topic,
        consumer=consumer,
        error=error[:4000],
        raw=body,
        key=key,
        offset=getattr(raw, "offset", None),
        partition=getattr(raw, "partition", None),
    )
    record_dead_letter(topic, consumer, exc)
    log.warning("dead-lettered %s offset=%s from %s: %s", topic, letter.offset, consumer, error.splitlines()[0])
    await broker.publish(
        letter.model_dump_json(),
        topic=f"{topic}.dlq",
        key=key.encode() if key else None,
        headers={"content-type": "application/json", "x-kefu-error": error.splitlines()[0][:200]},
    )


async def json_body(msg: StreamMessage[Any]) -> Any:
    """Lifecycle topics carry JSON whatever content-type a producer set; a body that isn't JSON is an error."""
    return json.loads(msg.body)


def make_broker(settings: KefuSettings, *, service: str) -> KafkaBroker:
    """One broker per service process; consumers of the service share its dead-letter policy.

    Middleware order matters: the first is outermost. Telemetry wraps everything so the DLQ publish is part of the
    consumer's trace; Prometheus sits inside the DLQ policy so a failing handler still counts as an error there.
    """
    configure_tracing(service, settings)
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=f"kefu-{service}",
        enable_idempotence=False,
        acks="all",
        middlewares=[
            KafkaTelemetryMiddleware(),
            partial(DeadLetterMiddleware, consumer=service),
            KafkaPrometheusMiddleware(registry=REGISTRY, app_name=service, metrics_prefix=METRICS_PREFIX),
        ],
        decoder=json_body,
        logger=logging.getLogger(f"kefu.{service}.faststream"),
    )


def consumer_options(settings: KefuSettings, *, group: str) -> dict[str, Any]:
    """Subscriber options every kefu consumer uses: a group, commit after handling, start from the beginning."""
    return {
        "group_id": f"kefu-{group}",
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.ACK,
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms,
        # Training a model can take minutes; don't let the group evict a busy consumer.
        "max_poll_interval_ms": 30 * 60 * 1000,
    }


async def publish_event(broker: KafkaBroker, event: Event) -> None:
    """Publish one lifecycle event directly. Callers after a DB write use the outbox instead."""
    await publish_json(
        broker, topic=event.topic.value, key=event.key, payload=event.model_dump_json(), event_id=event.event_id
    )


async def publish_json(broker: KafkaBroker, *, topic: str, key: str, payload: str, event_id: str) -> None:
    """The one way lifecycle events go on the wire: JSON body, lineage key, event id header."""
    await broker.publish(
        payload,
        topic=topic,
        key=key.encode(),
        headers={"content-type": "application/json", "x-kefu-event-id": event_id},
    )
