"""The AsyncAPI document of the lifecycle topics, generated from the event models so it never drifts from them.

FastStream writes the specification: a broker that is never connected declares one publisher per ``Topic`` (with
its pydantic payload model) and one per dead-letter topic (``DeadLetter``); other teams subscribe from the result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from libs.common.events import EVENT_TYPES, DeadLetter

_PRODUCERS = {
    "dataset.ready": "ingest, feedback (a release of approved corrections)",
    "model.trained": "trainer",
    "model.failed": "trainer",
    "engine.built": "builder",
    "deployment.live": "gateway",
    "deployment.rolled_back": "gateway",
    "feedback.flagged": "feedback",
    "knowledge.updated": "feedback (an approved correction, served at once)",
    "quality.drift": "feedback (the question-drift check)",
}

_HEADERS = (
    "Kafka key: the lineage id ({key}). Headers: `x-kefu-event-id`, `content-type: application/json`, and the "
    "W3C `traceparent` of the producing trace."
)


def asyncapi_document(bootstrap: str = "kafka:9092", version: str = "1") -> dict[str, Any]:
    """The AsyncAPI 3.0 document (as a JSON-ready dict) for every lifecycle topic and its ``.dlq``."""
    broker = KafkaBroker(bootstrap, description="kefu lifecycle events (Apache Kafka in production).")
    for topic, model in EVENT_TYPES.items():
        about = f"Produced by {_PRODUCERS.get(topic.value, 'kefu')}. " + _HEADERS.format(key=model.key_field)
        broker.publisher(topic.value, schema=model, title=topic.value, description=about)
        broker.publisher(
            topic.dlq,
            schema=DeadLetter,
            title=topic.dlq,
            description=f"Messages of {topic.value} a consumer could not parse, validate or handle, with the error.",
        )
    spec = AsyncAPI(
        broker,
        title="kefu lifecycle events",
        version=version,
        description="FAQ data → fine-tuned model → engine → deployment, and agents' feedback. Payloads are JSON; "
        "every event carries `event_id`, `schema_version` and `occurred_at`.",
        schema_version="3.0.0",
    )
    return json.loads(spec.to_specification().to_json())


def write_asyncapi(path: Path, *, bootstrap: str = "kafka:9092") -> Path:
    """Write the document to ``path``: YAML for ``.yaml``/``.yml``, JSON otherwise."""
    doc = asyncapi_document(bootstrap)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".yaml", ".yml"):
        path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    else:
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
