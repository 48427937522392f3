"""Lifecycle topics and their event payloads: the ONE place topic names and schemas are defined.

Producers publish these models as JSON; consumers validate them. ``schema_version`` is a literal, so an event of
a version a consumer does not know fails validation and goes to the topic's dead-letter queue instead of being
half-understood. Kafka key = the event's lineage id, so one lineage keeps its order within a partition.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class Topic(StrEnum):
    DATASET_READY = "dataset.ready"
    MODEL_TRAINED = "model.trained"
    MODEL_FAILED = "model.failed"
    ENGINE_BUILT = "engine.built"
    DEPLOYMENT_LIVE = "deployment.live"
    DEPLOYMENT_ROLLED_BACK = "deployment.rolled_back"
    FEEDBACK_FLAGGED = "feedback.flagged"
    KNOWLEDGE_UPDATED = "knowledge.updated"
    QUALITY_DRIFT = "quality.drift"

    @property
    def dlq(self) -> str:
        """Dead-letter topic: messages a consumer could not parse or handle, with the error."""
        return f"{self.value}.dlq"


def all_topic_names() -> list[str]:
    """Every lifecycle topic and its DLQ, e.g. to create them before consumers start."""
    return [name for t in Topic for name in (t.value, t.dlq)]


def _new_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Common envelope fields. Unknown fields are ignored so producers can add optional fields safely."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    topic: ClassVar[Topic]
    event_id: str = Field(default_factory=_new_id, min_length=1)
    schema_version: Literal[1] = 1
    occurred_at: datetime = Field(default_factory=_now)

    key_field: ClassVar[str]

    @property
    def key(self) -> str:
        """Kafka message key: the lineage id this event belongs to."""
        return str(getattr(self, self.key_field))


class DatasetReady(Event):
    topic: ClassVar[Topic] = Topic.DATASET_READY
    key_field: ClassVar[str] = "dataset_id"
    dataset_id: str = Field(min_length=1)
    uri: str
    parent_dataset_id: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    source: str
    flag_ids: list[str] = Field(default_factory=list, description="Feedback flags folded into this version.")


class ModelTrained(Event):
    topic: ClassVar[Topic] = Topic.MODEL_TRAINED
    key_field: ClassVar[str] = "model_id"
    model_id: str = Field(min_length=1)
    dataset_id: str
    run_id: str | None = Field(default=None, description="MLflow run id.")
    uri: str
    base_model: str
    metrics: dict[str, float] = Field(default_factory=dict)
    chat_template_sha256: str


class ModelFailed(Event):
    topic: ClassVar[Topic] = Topic.MODEL_FAILED
    key_field: ClassVar[str] = "dataset_id"
    dataset_id: str
    reason: str
    run_id: str | None = None
    metrics: dict[str, float] = Field(
        default_factory=dict, description="The run's metrics when it trained but missed the quality gate; else empty."
    )
    missed: list[str] = Field(
        default_factory=list,
        description="Quality-gate thresholds the model missed, e.g. 'train_exact_match 0.14 < 0.90'; empty when "
        "training itself failed.",
    )


class EngineBuilt(Event):
    topic: ClassVar[Topic] = Topic.ENGINE_BUILT
    key_field: ClassVar[str] = "engine_id"
    engine_id: str = Field(min_length=1)
    model_id: str
    dataset_id: str
    triton_model: str
    triton_version: int = Field(ge=1)
    precision: Literal["fp32", "int8", "fp16"]
    quality: dict[str, float | bool | str] = Field(default_factory=dict)
    passed_gate: bool


class DeploymentLive(Event):
    topic: ClassVar[Topic] = Topic.DEPLOYMENT_LIVE
    key_field: ClassVar[str] = "engine_id"
    engine_id: str
    model_id: str
    dataset_id: str
    triton_model: str
    triton_version: int = Field(ge=1)
    traffic_percent: float = Field(ge=0, le=100)
    previous_engine_id: str | None = None


class DeploymentRolledBack(Event):
    topic: ClassVar[Topic] = Topic.DEPLOYMENT_ROLLED_BACK
    key_field: ClassVar[str] = "engine_id"
    engine_id: str
    restored_engine_id: str | None
    reason: str


class FeedbackFlagged(Event):
    topic: ClassVar[Topic] = Topic.FEEDBACK_FLAGGED
    key_field: ClassVar[str] = "answer_id"
    flag_id: str
    answer_id: str
    reason: str
    correction: str | None = None
    agent: str


class KnowledgeUpdated(Event):
    """An approved change of the live knowledge base: serve it now, before any retraining."""

    topic: ClassVar[Topic] = Topic.KNOWLEDGE_UPDATED
    key_field: ClassVar[str] = "entry_id"
    entry_id: str = Field(min_length=1)
    action: Literal["add", "replace", "retire", "similar_add", "similar_remove"]
    question: str = Field(min_length=1, description="The entry's question; for similar_*: the wording added/removed.")
    answer: str = Field(description="The entry's answer; empty for similar_*.")
    update_id: int | None = Field(default=None, description="Row id in knowledge_updates (its order).")
    flag_id: str | None = None


class QualityDrift(Event):
    """Customers' questions no longer look like the live engine's training questions (a threshold was crossed)."""

    topic: ClassVar[Topic] = Topic.QUALITY_DRIFT
    key_field: ClassVar[str] = "engine_id"
    check_id: str = Field(min_length=1)
    engine_id: str = Field(min_length=1)
    dataset_id: str
    window_start: datetime
    window_end: datetime
    questions: int = Field(ge=0, description="Customer questions in the window.")
    reference_questions: int = Field(ge=0)
    crossed: list[str] = Field(description="One line per threshold crossed, with its figures.")
    figures: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="confidence / length / far_share: both samples' summaries and KS tests."
    )
    clusters: list[dict[str, Any]] = Field(
        default_factory=list, description="Top clusters of handed-off or flagged questions in the window."
    )


EVENT_TYPES: dict[Topic, type[Event]] = {
    cls.topic: cls
    for cls in (
        DatasetReady,
        ModelTrained,
        ModelFailed,
        EngineBuilt,
        DeploymentLive,
        DeploymentRolledBack,
        FeedbackFlagged,
        KnowledgeUpdated,
        QualityDrift,
    )
}


class DeadLetter(BaseModel):
    """What lands on ``<topic>.dlq``: the raw message as received and why it was set aside."""

    topic: str
    consumer: str
    error: str
    raw: str
    key: str | None = None
    offset: int | None = None
    partition: int | None = None
    at: datetime = Field(default_factory=_now)
