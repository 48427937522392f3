"""FastStream KafkaBroker factory and the retry + dead-letter policy every consumer shares.

A handler failure is retried with exponential backoff (``KEFU_CONSUMER_RETRY_*``) unless it is poison (a body that
cannot be parsed or validated, or ``PoisonMessage``): poison goes to ``<topic>.dlq`` at once, anything else only
after the last attempt. ``kefu dlq list|replay TOPIC`` shows and re-publishes dead letters.

Every broker carries FastStream's OpenTelemetry middleware (trace context in Kafka headers, a span per publish and
per handled message) and Prometheus middleware (events received/processed/published and handler latency per
topic, in the default registry that ``/metrics`` serves), around the dead-letter middleware.

Idempotence is off: Tansu (and stock aiokafka's InitProducerId v0) rejects it. Handlers are idempotent instead
(``libs.common.outbox.claim_event``), and producing after a DB write goes through the outbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from faststream import BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from prometheus_client import REGISTRY
from pydantic import ValidationError

from libs.common.events import DeadLetter, Event
from libs.common.kafka_security import kafka_security
from libs.common.settings import KefuSettings
from libs.common.telemetry import METRICS_PREFIX, configure_tracing, record_dead_letter

log = logging.getLogger("kefu.broker")


class PoisonMessage(Exception):
    """Raise from a handler for a message that can never be handled as sent: dead-lettered without retries."""


class TransientError(Exception):
    """Raise (or ``raise … from``) for a failure that may pass, e.g. a dependency still starting: retried."""


#: Failures that are the message's own: the same bytes fail the same way on every attempt.
POISON_ERRORS: tuple[type[BaseException], ...] = (
    json.JSONDecodeError,
    UnicodeDecodeError,
    ValidationError,
    PoisonMessage,
)


def classify(exc: BaseException) -> Literal["poison", "transient"]:
    """Poison (dead-letter now) or transient (retry first) for a handler's exception.

    The exception and its explicit causes (``raise … from``) are looked at, so a wrapper keeps its root's nature.
    Anything not known to be poison is retried: DB connection errors, Triton unavailable, broker errors and
    timeouts, and also errors of unknown kind, because a misread outage costs a dead letter and a manual replay
    while a retried bug costs only the backoff (1.5 s at the defaults) before it is dead-lettered anyway.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, TransientError):
            return "transient"
        if isinstance(cause, POISON_ERRORS):
            return "poison"
        cause = cause.__cause__
    return "transient"


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` handler calls at most; waits ``backoff_s`` · 2^(n-1), capped at ``max_backoff_s``, ±20 %."""

    attempts: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 4.0

    @classmethod
    def from_settings(cls, settings: KefuSettings) -> RetryPolicy:
        return cls(
            settings.consumer_retry_attempts,
            settings.consumer_retry_backoff_seconds,
            settings.consumer_retry_max_backoff_seconds,
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based); jitter spreads replicas apart."""
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)


class DeadLetterMiddleware(BaseMiddleware):
    """Retries a failing handler per ``RetryPolicy`` unless the failure is poison; what still fails goes to
    ``<topic>.dlq`` with the error.

    Retrying here, in place, keeps the partition's order (a later event of the same lineage never overtakes a
    retried one); handlers are idempotent (``claim_event`` in the rolled-back transaction), so a retry is safe.
    The message is then acknowledged so the consumer keeps going; ``kefu dlq replay`` re-publishes it.
    """

    def __init__(self, msg: Any, /, *, context: Any, consumer: str, retry: RetryPolicy) -> None:
        super().__init__(msg, context=context)
        self.consumer = consumer
        self.retry = retry

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        attempt = 1
        while True:
            try:
                return await call_next(msg)
            except Exception as exc:  # noqa: BLE001 - setting aside ANY failure is the point of a DLQ
                if classify(exc) == "poison" or attempt >= self.retry.attempts:
                    dlq = partial(send_to_dlq, self.context.broker, msg, exc, consumer=self.consumer, attempts=attempt)
                    await until_sent(dlq, self.retry)
                    return None
                delay = self.retry.delay(attempt)
                log.warning(
                    "%s failed on %s (attempt %d/%d), retrying in %.2fs: %s: %s",
                    self.consumer,
                    getattr(msg.raw_message, "topic", "?"),
                    attempt,
                    self.retry.attempts,
                    delay,
                    type(exc).__name__,
                    str(exc).splitlines()[0][:200] if str(exc) else "",
                )
                await asyncio.sleep(delay)
                attempt += 1


async def until_sent(send: Any, retry: RetryPolicy) -> None:
    """Call ``send`` until it succeeds, backing off up to ``retry.max_backoff_s`` between tries.

    The offset is committed once the handler scope returns, so a dead letter that could not be published (broker
    down) would be lost: waiting holds the partition instead. A service stopping meanwhile cancels the wait and
    the message, never committed, is delivered again after the restart.
    """
    tries = 1
    while True:
        try:
            return await send()
        except Exception as exc:  # noqa: BLE001 - any publish failure: keep the message, try again
            delay = retry.delay(min(tries, 16))
            log.warning("dead-letter publish failed (try %d), again in %.2fs: %r", tries, delay, exc)
            await asyncio.sleep(delay)
            tries += 1


async def send_to_dlq(
    broker: KafkaBroker, msg: StreamMessage[Any], exc: BaseException, *, consumer: str, attempts: int = 1
) -> None:
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
    log.warning(
        "dead-lettered %s offset=%s from %s after %d attempt(s): %s",
        topic,
        letter.offset,
        consumer,
        attempts,
        error.splitlines()[0],
    )
    await broker.publish(
        letter.model_dump_json(),
        topic=f"{topic}.dlq",
        key=key.encode() if key else None,
        headers={
            "content-type": "application/json",
            "x-kefu-error": error.splitlines()[0][:200],
            "x-kefu-attempts": str(attempts),
        },
    )


async def json_body(msg: StreamMessage[Any]) -> Any:
    """Lifecycle topics carry JSON whatever content-type a producer set; a body that isn't JSON is an error."""
    return json.loads(msg.body)


def make_broker(settings: KefuSettings, *, service: str) -> KafkaBroker:
    """One broker per service process; consumers of the service share its retry and dead-letter policy.

    Middleware order matters: the first is outermost. Telemetry wraps everything so the DLQ publish is part of the
    consumer's trace; Prometheus sits inside the DLQ policy so a failing handler still counts as an error there.
    """
    configure_tracing(service, settings)
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=f"kefu-{service}",
        # TLS / SASL from KEFU_KAFKA_SECURITY_PROTOCOL & co.; None (PLAINTEXT) for the embedded broker.
        security=kafka_security(settings),
        enable_idempotence=False,
        acks="all",
        middlewares=[
            KafkaTelemetryMiddleware(),
            partial(DeadLetterMiddleware, consumer=service, retry=RetryPolicy.from_settings(settings)),
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
