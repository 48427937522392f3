"""The answer-quality alert rules: valid PromQL (a real parser), well-formed rules, and every metric they name is
one the services export (or a rule records), so an alert cannot silently watch a series that never exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client import REGISTRY

import services.feedback.metrics
import services.gateway.metrics  # noqa: F401 - registers the gateway's metrics

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",), "summary": ("",)}


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text("utf-8"))["groups"] for rule in group["rules"]]


def exported_series() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


def test_every_expression_parses_as_promql() -> None:
    assert len(rules()) >= 8
    for rule in rules():
        promql_parser.parse(rule["expr"])  # raises ValueError naming the problem


def test_alerts_are_well_formed_and_recorded_series_are_used() -> None:
    recorded = {r["record"] for r in rules() if "record" in r}
    alerts = [r for r in rules() if "alert" in r]
    assert {a["alert"] for a in alerts} >= {"KefuCanaryHandsOffMore", "KefuHandoffShareUp", "KefuFlagRateUp"}
    for alert in alerts:
        assert alert["for"] and alert["labels"]["severity"] and alert["annotations"]["summary"], alert["alert"]
    used = {name for r in alerts for name in re.findall(r"kefu:[a-z0-9_:]+", r["expr"])}
    assert used <= recorded, used - recorded
    assert recorded <= used, f"recorded but never alerted on: {recorded - used}"


def test_every_metric_named_is_exported_by_a_service() -> None:
    exported = exported_series()
    named = {name for r in rules() for name in re.findall(r"\bkefu_[a-z0-9_]+", r["expr"])}
    assert {"kefu_gateway_answers_total", "kefu_feedback_flags_total"} <= named
    assert named <= exported, named - exported


def test_prometheus_loads_the_rules_file() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text("utf-8"))
    assert (RULES.parent / config["rule_files"][0]) == RULES
