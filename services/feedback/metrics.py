"""Prometheus metrics of the feedback service (served on the shared ``/metrics``): flags per engine, so the flag
rate of each engine (flags ÷ its answers, ``kefu_gateway_answers``) can be compared and alerted on."""

from __future__ import annotations

from prometheus_client import Counter

FLAGS = Counter("kefu_feedback_flags", "Answers flagged by agents, by the engine that gave the answer.", ["engine"])
