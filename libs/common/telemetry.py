"""Logging, metrics and tracing shared by every process.

Metrics: FastStream's Prometheus middleware (see ``libs.common.broker``) counts events received, processed (by
status), published and the handler latency per topic under the ``kefu_`` prefix; ``DEAD_LETTERS`` counts what the
DLQ policy set aside. Everything lands in prometheus_client's default registry, which ``/metrics`` serves.

Tracing: W3C trace context travels in Kafka headers (FastStream's OpenTelemetry middleware), in the outbox row
(the relay publishes later, maybe from another process) and in job payloads (training and builds run outside the
consumer's span), so one trace follows dataset.ready → model.trained → engine.built → deployment.live. Spans are
exported only when ``KEFU_OTEL_ENDPOINT`` is set; otherwise the API's no-op tracer still forwards the context.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from prometheus_client import Counter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger("kefu.telemetry")

#: Prefix of FastStream's broker metrics, e.g. ``kefu_received_processed_messages_total{handler="dataset.ready"}``.
METRICS_PREFIX = "kefu"

DEAD_LETTERS = Counter(
    "kefu_dead_letters",
    "Messages a consumer could not parse, validate or handle, sent to <topic>.dlq.",
    ["topic", "consumer"],
)


class TelemetrySettings(BaseSettings):
    """Tracing knobs, read from the same ``KEFU_*`` environment as every service's settings."""

    model_config = SettingsConfigDict(env_prefix="KEFU_", env_file=".env", extra="ignore")

    otel_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector, e.g. http://otel-collector:4318/v1/traces. Unset: spans are not exported.",
    )


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every rebalance and transient reconnect at INFO; warnings are what operators need.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


_configured = False


def configure_tracing(service: str, settings: BaseSettings | None = None) -> bool:
    """Install an OTLP-exporting tracer provider and the gRPC instrumentors, once per process.

    Returns whether spans are exported. ``settings`` may be any settings object with ``otel_endpoint`` (a service's
    settings once the field is part of them); without one it is read from the environment.
    """
    global _configured
    endpoint = getattr(settings, "otel_endpoint", None) if settings is not None else None
    endpoint = endpoint or TelemetrySettings().otel_endpoint
    if not endpoint or _configured:
        return _configured
    # Heavy imports only when tracing is on: the local default never pays for them.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": f"kefu-{service}", "service.namespace": "kefu"})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    # Patches grpc.aio's channel and server factories: the gateway's ChatService and every Triton client call
    # (tritonclient.grpc.aio) get spans with the context propagated in gRPC metadata.
    GrpcAioInstrumentorClient().instrument()
    GrpcAioInstrumentorServer().instrument()
    _configured = True
    log.info("exporting traces of kefu-%s to %s", service, endpoint)
    return True


def trace_headers() -> dict[str, str] | None:
    """The current trace context as W3C headers (``traceparent``…), or None outside a sampled trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


@contextlib.contextmanager
def resumed_trace(headers: Mapping[str, str] | None, span_name: str | None = None) -> Iterator[None]:
    """Continue the trace ``headers`` were taken from (see ``trace_headers``), optionally in a new span.

    For work that runs after the message's own span ended: the outbox relay, and jobs queued by a consumer.
    """
    token = otel_context.attach(propagate.extract(dict(headers or {})))
    try:
        if span_name is None:
            yield
        else:
            with trace.get_tracer("kefu").start_as_current_span(span_name):
                yield
    finally:
        otel_context.detach(token)


def record_dead_letter(topic: str, consumer: str, exc: BaseException) -> None:
    """Count a dead-lettered message and mark the consumer's span failed (the DLQ swallows the exception)."""
    DEAD_LETTERS.labels(topic, consumer).inc()
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(trace.Status(trace.StatusCode.ERROR, f"dead-lettered: {type(exc).__name__}"))
