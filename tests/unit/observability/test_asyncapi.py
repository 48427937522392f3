"""The AsyncAPI document covers every lifecycle topic and its DLQ, with payload schemas from the event models."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from kefu.asyncapi import asyncapi_document, write_asyncapi
from kefu.cli import app
from libs.common.events import EVENT_TYPES, Topic


def test_every_topic_and_dlq_has_a_channel_with_its_payload_schema() -> None:
    doc = asyncapi_document("kafka:9092")
    assert doc["asyncapi"].startswith("3.")
    schemas = doc["components"]["schemas"]
    for topic in Topic:
        assert topic.value in doc["channels"], topic
        assert topic.dlq in doc["channels"], topic.dlq
        model = EVENT_TYPES[topic].__name__
        payload = doc["components"]["messages"][f"{topic.value}:Message"]["payload"]
        assert payload == {"$ref": f"#/components/schemas/{model}"}
        props = schemas[model]["properties"]
        assert {"event_id", "schema_version", "occurred_at"} <= set(props)
        assert props["schema_version"]["const"] == 1
    assert {"topic", "consumer", "error", "raw"} <= set(schemas["DeadLetter"]["properties"])


def test_written_as_yaml_or_json_by_suffix(tmp_path: Path) -> None:
    as_yaml = yaml.safe_load(write_asyncapi(tmp_path / "a.yaml").read_text(encoding="utf-8"))
    as_json = json.loads(write_asyncapi(tmp_path / "a.json").read_text(encoding="utf-8"))
    assert as_yaml == as_json


def test_cli_command_writes_the_document(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "asyncapi.yaml"
    result = CliRunner().invoke(app, ["asyncapi", "--out", str(out), "--bootstrap", "broker:9092"])
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert doc["servers"]["development"]["host"] == "broker:9092"
    assert Topic.DEPLOYMENT_LIVE.value in doc["channels"]
