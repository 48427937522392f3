"""`kefu events tail`'s output: one JSON object or one console line per record, whatever the payload holds."""

from __future__ import annotations

import json

from aiokafka.structs import ConsumerRecord

from kefu.events_tail import record_json, record_line


def record(value: bytes | None, key: bytes | None = b"ds-1") -> ConsumerRecord:
    headers = [("traceparent", b"00-abc-def-01")]
    return ConsumerRecord("dataset.ready", 2, 7, 1_796_000_000_123, 0, key, value, None, 4, 10, headers)


def test_json_has_where_key_headers_and_the_parsed_payload() -> None:
    payload = {"event_id": "e1", "schema_version": 1, "dataset_id": "ds-1", "rows": 12}
    doc = record_json(record(json.dumps(payload).encode()))
    assert doc == {
        "topic": "dataset.ready",
        "partition": 2,
        "offset": 7,
        "timestamp": "2026-11-30T00:53:20.123+00:00",
        "key": "ds-1",
        "headers": {"traceparent": "00-abc-def-01"},
        "value": payload,
    }
    json.dumps(doc)  # serialisable as it is


def test_json_keeps_a_body_that_is_not_json_as_text() -> None:
    doc = record_json(record(b"\xffnot json", key=None))
    assert doc["value"] == "\ufffdnot json" and doc["key"] is None
    assert record_json(record(None))["value"] is None  # a tombstone


def test_line_is_time_topic_then_payload_fields_without_the_envelope() -> None:
    line = record_line(record(json.dumps({"event_id": "e1", "dataset_id": "ds-1", "rows": 12}).encode()))
    assert line == "00:53:20 dataset.ready dataset_id=ds-1 rows=12"
