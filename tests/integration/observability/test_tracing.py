"""Traces and metrics across the real broker: one trace from the producer's transaction, through the outbox relay
(another broker, as if another process), to the consumer; Prometheus counters per topic; DLQ counts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from kefu.tansu import create_topics
from libs.common.broker import consumer_options, make_broker, publish_json
from libs.common.events import DatasetReady
from libs.common.outbox import enqueue, publish_pending
from libs.common.settings import KefuSettings


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """An in-memory exporter on the process's tracer provider (installed here unless a test run already did)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


async def test_one_trace_spans_outbox_producer_and_consumer(
    settings: KefuSettings, db_sessions, spans: InMemorySpanExporter
) -> None:
    tag = uuid.uuid4().hex[:8]
    producer, consumer = f"obs-producer-{tag}", f"obs-consumer-{tag}"
    event = DatasetReady(dataset_id=f"ds-{tag}", uri="file:///d", source="obs")
    seen: dict[str, int] = {}

    consuming = make_broker(settings, service=consumer)

    @consuming.subscriber(event.topic.value, **consumer_options(settings, group=consumer))
    async def on_ready(got: DatasetReady) -> None:
        if got.event_id == event.event_id:
            seen["trace_id"] = trace.get_current_span().get_span_context().trace_id

    relay = make_broker(settings, service=producer)
    await consuming.start()
    await relay.start()
    try:
        # The producer's transaction runs in a span; the relay publishes later, outside it.
        with trace.get_tracer("test").start_as_current_span("ingest request") as origin:
            async with db_sessions() as session, session.begin():
                enqueue(session, event)
        origin_trace = origin.get_span_context().trace_id
        assert trace.get_current_span().get_span_context().trace_id != origin_trace
        while await publish_pending(relay, db_sessions):
            pass
        await until(lambda: "trace_id" in seen)
    finally:
        await relay.stop()
        await consuming.stop()

    assert seen["trace_id"] == origin_trace
    in_trace: list[ReadableSpan] = [s for s in spans.get_finished_spans() if s.context.trace_id == origin_trace]
    kinds = {(s.kind, s.name) for s in in_trace}
    assert (trace.SpanKind.PRODUCER, "dataset.ready publish") in kinds
    assert (trace.SpanKind.CONSUMER, "dataset.ready process") in kinds
    labels = {"broker": "kafka", "handler": "dataset.ready"}
    assert sample("kefu_received_messages_total", {"app_name": consumer, **labels}) >= 1
    assert sample("kefu_received_processed_messages_total", {"app_name": consumer, **labels, "status": "acked"}) >= 1
    published = {"app_name": producer, "broker": "kafka", "destination": "dataset.ready", "status": "success"}
    assert sample("kefu_published_messages_total", published) >= 1


async def test_dead_lettered_message_is_counted_and_marks_the_span(
    settings: KefuSettings, spans: InMemorySpanExporter
) -> None:
    tag = uuid.uuid4().hex[:8]
    topic, service = f"obs-{tag}", f"obs-dlq-{tag}"
    await create_topics(settings.kafka_bootstrap, [topic, f"{topic}.dlq"], partitions=1)
    broker = make_broker(settings, service=service)

    @broker.subscriber(topic, **consumer_options(settings, group=service))
    async def strict(got: DatasetReady) -> None:
        raise AssertionError("an invalid payload must not reach the handler")

    await broker.start()
    try:
        await publish_json(broker, topic=topic, key="k", payload='{"not": "an event"}', event_id="bad-1")
        await until(lambda: sample("kefu_dead_letters_total", {"topic": topic, "consumer": service}) >= 1)
    finally:
        await broker.stop()

    errored = {"app_name": service, "broker": "kafka", "handler": topic, "status": "error"}
    assert sample("kefu_received_processed_messages_total", errored) == 1
    dlq_published = {"app_name": service, "broker": "kafka", "destination": f"{topic}.dlq", "status": "success"}
    assert sample("kefu_published_messages_total", dlq_published) == 1
    process = [s for s in spans.get_finished_spans() if s.name == f"{topic} process"]
    assert process and process[-1].status.status_code is trace.StatusCode.ERROR
    # The DLQ publish belongs to the failed message's trace, so an operator can follow it.
    dlq_spans = [s for s in spans.get_finished_spans() if s.name == f"{topic}.dlq publish"]
    assert dlq_spans and dlq_spans[-1].context.trace_id == process[-1].context.trace_id
