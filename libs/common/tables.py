"""The one relational schema (SQLAlchemy 2 declarative); Alembic migrations in ``migrations/`` create it.

Foundation tables: the event ledger, processed event ids (idempotent consumers) and the transactional outbox.

Ownership. Each domain table has one writer, its owner (``datasets`` has two, see [b]); the foundation tables and
``jobs`` are written by every service for its own rows, through libs/common. A read by another service is listed
below with its reason [a-h] and is deliberate; any other cross-service read is a defect: carry the data in an event,
or add the read here.

================== =============================================== ==============================================
table              written by                                      read by
================== =============================================== ==============================================
outbox             every producer (``outbox.enqueue``, in the      every service's relay: any pending row, leased,
                   state change's transaction)                     so events leave while their producer is down
event_ledger       every producer (``outbox.enqueue``)             feedback: ``kefu lineage`` (model.failed) [a]
processed_events   every consumer, its own ``consumer`` rows       the same consumer (``outbox.claim_event``)
jobs               trainer (kind ``train``), builder (``build``),  the same service (``libs.common.jobs``)
                   each only its own kind
datasets           ingest (uploads) and feedback (releases) [b],   ingest, feedback (insert-if-absent);
                   both through ``libs.datasets.store``            feedback: lineage [c]
models             trainer                                         feedback: lineage [c]
engines            builder                                         builder (retire on rollback); gateway: the
                                                                   engine's manifest uri [d]; feedback: lineage [c]
api_keys           gateway (``kefu keys create``; demo and bench   gateway, ingest, feedback: auth [e]
                   through ``libs.common.apikeys``)
answers            gateway (the answer log)                        gateway (canary, shadow, stats); feedback: agent
                                                                   console, flags, release, lineage, drift [f]
deployments        gateway (rollout, shadow evidence)              gateway; feedback: release parent, lineage,
                                                                   drift [g]; ``kefu demo``: rollback reason; builder:
                                                                   the live Triton version [i]
flags              feedback                                        feedback
knowledge_updates  feedback (approved live corrections)            feedback; gateway: knowledge refresh [h]
drift_checks       feedback (every drift check, with its figures)  feedback (history, scheduler); ``kefu report``
================== =============================================== ==============================================

[a] The ledger is the journal of every event; lineage reads failures there instead of keeping its own copy.
[b] Two writers by design: a dataset version is the same record whichever service made it, and its id is a content
    hash. Trainer and builder learn of a version from ``dataset.ready``, never from this table.
[c] ``kefu lineage`` (feedback) joins the chain dataset → model → engine → deployment → flags for people; read-only.
[d] ``engine.built`` carries no artifact uri, so the gateway looks it up to read the engine's retrieval settings;
    putting the uri in the event would remove this read.
[e] One key store for every API, so one key works wherever its role allows.
[f] Agents flag and review the answers customers were given: the log is the gateway's, feedback never writes it
    and keeps only the ``answer_id`` on a flag. A release also snapshots the serving profile (question and token
    length percentiles, unanswered-question clusters) into the new dataset version's ``serving_profile.json``
    (services/feedback/serving_profile.py): the trainer learns of real traffic from its dataset dir, never here.
[g] A release is built on the dataset of the live engine, and drift is measured against the live engine.
[h] The table is the ordered log of live corrections: ``knowledge.updated`` only wakes the gateway, which reads the
    rows it has not applied yet, and polls every second as a backstop to a missed event; a restarted gateway
    rebuilds its knowledge from it.
[i] Triton keeps the newest two versions loaded: before loading a new one, the builder parks versions between the
    live one and the new one, so the live version is never unloaded (services/builder/retention.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Integer, MetaData, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """``timestamptz`` that always reads back timezone-aware UTC. SQLite has no time zones and returns naive
    datetimes, which cannot be compared with ``utcnow()``; PostgreSQL already returns aware ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class EventLedger(Base):
    """Every lifecycle event this system emitted, queryable for lineage (`kefu lineage`)."""

    __tablename__ = "event_ledger"
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    topic: Mapped[str] = mapped_column(String(128), index=True)
    key: Mapped[str] = mapped_column(String(256), index=True)
    payload: Mapped[dict] = mapped_column(JSON)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ProcessedEvent(Base):
    """(consumer, event_id) seen: a redelivered event is recognised and skipped."""

    __tablename__ = "processed_events"
    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class OutboxMessage(Base):
    """An event written in the same transaction as the state change it announces; a relay publishes it."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    topic: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(256))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    # A relay leases rows before publishing: two relays never send the same row, and a relay that dies
    # mid-publish only delays the row until the lease runs out.
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # W3C trace context of the transaction that staged the event (the payload schema is fixed): the relay
    # publishes within it, so the event's consumers join the producer's trace.
    headers: Mapped[dict | None] = mapped_column(JSON)


class Dataset(Base):
    """A content-addressed dataset version (ingest or a feedback release) and where it came from."""

    __tablename__ = "datasets"
    dataset_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    uri: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    parent_dataset_id: Mapped[str | None] = mapped_column(String(64), index=True)
    counts: Mapped[dict] = mapped_column(JSON, default=dict)
    card: Mapped[dict] = mapped_column(JSON, default=dict)
    flag_ids: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Job(Base):
    """Durable work queue of long tasks (training, engine builds): one row per (kind, key), so a redelivered
    event never trains or builds the same thing twice, and a crash mid-run is found and retried at start."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("kind", "key"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    key: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued | running | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    # The runner running the job and how long its claim holds: renewed by the runner's heartbeat, so another
    # replica takes a running job over only once its lease expired (libs/common/jobs.py).
    owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Model(Base):
    """A trained model version (trainer) with its MLflow run and metrics."""

    __tablename__ = "models"
    model_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(String(64), index=True)
    run_id: Mapped[str | None] = mapped_column(String(64))
    uri: Mapped[str] = mapped_column(Text)
    base_model: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    chat_template_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Engine(Base):
    """A built serving engine (builder): its Triton model/version and quality-gate report."""

    __tablename__ = "engines"
    engine_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(64), index=True)
    dataset_id: Mapped[str] = mapped_column(String(64))
    triton_model: Mapped[str] = mapped_column(String(128))
    triton_version: Mapped[int] = mapped_column(Integer)
    precision: Mapped[str] = mapped_column(String(8))
    quality: Mapped[dict] = mapped_column(JSON, default=dict)
    passed_gate: Mapped[bool] = mapped_column(Boolean)
    uri: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ApiKey(Base):
    """An API key, stored only as a SHA-256 hash; ``role``: app (chat) | agent (flag) | data (upload) | admin."""

    __tablename__ = "api_keys"
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the non-secret prefix shown in logs
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128), default="")
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Answer(Base):
    """Every answer the gateway served, with its lineage and timings: what feedback flags link to."""

    __tablename__ = "answers"
    answer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    engine_id: Mapped[str | None] = mapped_column(String(64), index=True)
    model_id: Mapped[str | None] = mapped_column(String(64))
    # The customer's chat this answer is a turn of (gRPC conversation_id, OpenAI metadata/header); groups the log.
    conversation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    dataset_id: Mapped[str | None] = mapped_column(String(64))
    triton_model: Mapped[str | None] = mapped_column(String(128))
    triton_version: Mapped[int | None] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    ttft_ms: Mapped[float | None] = mapped_column()
    latency_ms: Mapped[float | None] = mapped_column()
    finish_reason: Mapped[str] = mapped_column(String(16), default="")
    status: Mapped[str] = mapped_column(String(16), default="ok")  # ok | error | cancelled
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    # Grounding: the knowledge entries put in the prompt (rank order), their BM25 scores, the retrieval
    # confidence, and whether the customer was handed to a human instead of the model answering.
    handoff: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    entry_ids: Mapped[list | None] = mapped_column(JSON)
    retrieval_scores: Mapped[list | None] = mapped_column(JSON)
    confidence: Mapped[float | None] = mapped_column()
    # An approved correction served as is: the engine was not measured to follow edited references
    # (services/gateway/knowledge.py), so the customer got the agents' text, not the model's.
    verbatim: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # A hand-off by the answer check (services/gateway/opening_check.py): retrieval found an entry but the engine's
    # answer was not drawn from it. The question IS covered, so it is no unanswered question and no out-of-scope probe.
    ungrounded: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Why a retrieval hand-off had confidence 0: the kinds of fact the question asks for (price, duration, count,
    # opposite; libs.common.asked_kinds) that its best entry never speaks of. None: low coverage, or answered.
    unspoken_kinds: Mapped[list | None] = mapped_column(JSON(none_as_null=True))  # SQL NULL, not JSON null


class Deployment(Base):
    """Which engine serves what share of traffic: live, canary, retired or rolled back."""

    __tablename__ = "deployments"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    engine_id: Mapped[str] = mapped_column(String(64), index=True)
    model_id: Mapped[str] = mapped_column(String(64))
    dataset_id: Mapped[str] = mapped_column(String(64))
    triton_model: Mapped[str] = mapped_column(String(128))
    triton_version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)  # live | canary | retired | rolled_back
    traffic_percent: Mapped[float] = mapped_column(default=100.0)
    previous_engine_id: Mapped[str | None] = mapped_column(String(64))
    requests: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # A canary's shadow replay against the live engine (services/gateway/shadow.py); the verdict reads it.
    evidence: Mapped[dict | None] = mapped_column(JSON)
    held: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # operator: no verdict


class Flag(Base):
    """An agent's flag on an answer, its correction and its review."""

    __tablename__ = "flags"
    flag_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    answer_id: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(Text)
    correction: Mapped[str | None] = mapped_column(Text)
    agent: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), index=True, default="open")  # open|approved|rejected|released
    reviewer: Mapped[str | None] = mapped_column(String(128))
    final_correction: Mapped[str | None] = mapped_column(Text)
    review_note: Mapped[str | None] = mapped_column(Text)
    released_dataset_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # What the correction fixes: the knowledge entry it replaces (the answer's top reference) and that entry's
    # question; both None for a new entry (e.g. a handed-off question turned into an FAQ entry).
    entry_id: Mapped[str | None] = mapped_column(String(64))
    entry_question: Mapped[str | None] = mapped_column(Text)
    # Instead of a correction: the customer's question is another wording of this entry (a similar question).
    similar_to: Mapped[str | None] = mapped_column(String(64))


class KnowledgeUpdate(Base):
    """An approved change of the live knowledge base, applied at once by whatever serves retrieval (owner:
    feedback). Kept, in order, so a restarted gateway rebuilds the same knowledge."""

    __tablename__ = "knowledge_updates"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(String(64), index=True)
    # add | replace | retire an entry; similar_add | similar_remove: ``question`` is a wording of entry ``entry_id``
    action: Mapped[str] = mapped_column(String(16))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    flag_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class DriftCheck(Base):
    """One question-drift check (daily job, API or CLI; services/feedback/drift_check.py): the window compared, the
    figures (KS statistic and p-value per measure, far-question share), the thresholds in force, what crossed them,
    the top unanswered clusters, and the ``quality.drift`` event it published, if any (owner: feedback)."""

    __tablename__ = "drift_checks"
    check_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | api | cli | manual
    engine_id: Mapped[str] = mapped_column(String(64))
    dataset_id: Mapped[str] = mapped_column(String(64))
    window_start: Mapped[datetime] = mapped_column(UtcDateTime())
    window_end: Mapped[datetime] = mapped_column(UtcDateTime())
    questions: Mapped[int] = mapped_column(Integer, default=0)
    reference_questions: Mapped[int] = mapped_column(Integer, default=0)
    figures: Mapped[dict] = mapped_column(JSON, default=dict)
    thresholds: Mapped[dict] = mapped_column(JSON, default=dict)
    crossed: Mapped[list] = mapped_column(JSON, default=list)
    judged: Mapped[bool] = mapped_column(Boolean, default=True)
    drifted: Mapped[bool] = mapped_column(Boolean, default=False)
    clusters: Mapped[list] = mapped_column(JSON, default=list)
    event_id: Mapped[str | None] = mapped_column(String(64))
