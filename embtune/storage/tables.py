"""ORM tables: the schema that migrations build and that repositories map to domain objects.

Code above `storage` works with the domain objects. A task's `metadata` is stored as `meta`
(`metadata` is reserved by SQLAlchemy's declarative base)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from embtune.storage.db import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class EmbeddingModelRow(Base):
    __tablename__ = "embedding_models"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    plugin_name: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(Text)
    parent_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("embedding_models.id", ondelete="RESTRICT"), index=True
    )
    task_id: Mapped[str | None] = mapped_column(String(32), index=True)
    metrics: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    # the judged set its tasks are scored on unless a task names another
    evaluation_set_id: Mapped[str | None] = mapped_column(
        String(32),
        # named `fk_embedding_models_evaluation_set` by the migration; SQLite does not report
        # the name of a constraint added with its column, so none is declared here
        ForeignKey("evaluation_sets.id"),
    )

    __table_args__ = (Index("ix_embedding_models_created", "created_at", "id"),)


class TaskRow(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # `TaskKind`: what the run computes (the lifecycle is the same for every kind)
    kind: Mapped[str] = mapped_column(String(16), server_default=text("'fine_tuning'"))
    status: Mapped[str] = mapped_column(String(16))
    # None for a task of no model (an import)
    embedding_model_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("embedding_models.id", ondelete="RESTRICT")
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]
    meta: Mapped[dict[str, Any]]
    message_id: Mapped[str | None] = mapped_column(String(64))
    progress: Mapped[dict[str, Any] | None]
    metrics: Mapped[dict[str, Any] | None]
    result_model_id: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]

    __table_args__ = (
        # newest-first pages, with and without a status / model filter
        Index("ix_tasks_created", "created_at", "id"),
        Index("ix_tasks_kind_created", "kind", "created_at", "id"),
        Index("ix_tasks_status_created", "status", "created_at", "id"),
        Index("ix_tasks_model_created", "embedding_model_id", "created_at", "id"),
        # recovery scans only live tasks
        Index("ix_tasks_status_heartbeat", "status", "heartbeat_at"),
        # the tasks that name a batch (batch listing); most tasks name none when created
        Index(
            "ix_tasks_batch",
            "batch_id",
            sqlite_where=text("batch_id IS NOT NULL"),
            postgresql_where=text("batch_id IS NOT NULL"),
        ),
    )


class TaskCountRow(Base):
    """How many tasks each (kind, model, status) holds, kept in step with `tasks` by the
    transactions that change a status, so a filtered list's total is a few-row sum rather than
    a count over up to a million index entries."""

    __tablename__ = "task_counts"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    embedding_model_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)


class TaskEventRow(Base):
    __tablename__ = "task_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("tasks.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_task_events_task", "task_id", "id"),)


class AbortSignalRow(Base):
    """Abort requests for dramatiq-abort when no Redis carries them (embedded, RabbitMQ)."""

    __tablename__ = "abort_signals"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    params: Mapped[dict[str, Any]]
    expires_at: Mapped[datetime] = mapped_column(index=True)


# -- catalogue and clickstream ------------------------------------------------------------------


class ItemRow(Base):
    """A searchable document; keyed by the search engine's own object id."""

    __tablename__ = "items"

    object_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class BatchRow(Base):
    """A group of sessions trained on together; `open` collects, `released` is frozen."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    released_at: Mapped[datetime | None]
    pruned_at: Mapped[datetime | None]  # when retention deleted its sessions

    __table_args__ = (
        Index("ix_batches_created", "created_at", "id"),
        # At most one open batch: two ingests creating it lazily at once cannot both win.
        Index(
            "uq_batches_open",
            "status",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )


class SearchSessionRow(Base):
    __tablename__ = "search_sessions"

    session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    batch_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("batches.id", ondelete="RESTRICT")
    )
    query: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(String(200))
    search_meta: Mapped[dict[str, Any] | None]
    irrelevant: Mapped[bool] = mapped_column(Boolean, default=False)
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    received_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_search_sessions_batch", "batch_id", "session_id"),
        Index("ix_search_sessions_user", "user_id"),  # erasing one user's sessions
    )


class SessionResultRow(Base):
    """One shown result; (session, object) is unique so a click names exactly one result.

    No foreign key to `search_sessions` (since 0008): PostgreSQL checks one row by row, ten per
    session, and that check was half the database's work in a bulk insert (README,
    "Performance"). Results are written only in the transaction that inserts their session
    (`insert_session`, the bulk path's inserted ids) and deleted only with it (retention and
    erasure delete events, results, then sessions); the retention and erasure tests check
    that none outlives its session. Clicks keep their foreign key to the result they name."""

    __tablename__ = "session_results"

    session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    object_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)  # order as posted: the tie-break for ranks
    meta: Mapped[dict[str, Any] | None]


class ClickEventRow(Base):
    """A user action on a shown result; the foreign key keeps clicks on unshown items out."""

    __tablename__ = "click_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(200), unique=True)
    session_id: Mapped[str] = mapped_column(String(200))
    object_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]
    received_at: Mapped[datetime]
    # received after its session's batch was released (it joins the session all the same)
    late: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    __table_args__ = (
        ForeignKeyConstraint(
            ["session_id", "object_id"],
            ["session_results.session_id", "session_results.object_id"],
            ondelete="CASCADE",
        ),
        Index("ix_click_events_session", "session_id", "created_at", "id"),
    )


class ItemTombstoneRow(Base):
    """An item deleted from the catalogue. Sessions that showed it keep its id among their
    results (the tombstone says it is gone on purpose), and training skips it. Removed when
    the item is added again."""

    __tablename__ = "item_tombstones"

    object_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    deleted_at: Mapped[datetime]


# -- imports and the audit trail ------------------------------------------------------------------


class ImportProgressRow(Base):
    """How far an import task has committed. Written in the transaction that stores each chunk,
    so a re-queued run resumes after the last committed chunk, never re-reading it."""

    __tablename__ = "import_progress"

    task_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    # the reader's resume point: {"offset": bytes, "line": n} (NDJSON), {"row": n} (Parquet)
    position: Mapped[dict[str, Any]]
    rows_read: Mapped[int] = mapped_column(BigInteger)
    bytes_read: Mapped[int] = mapped_column(BigInteger)
    chunks: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(BigInteger)
    duplicate: Mapped[int] = mapped_column(BigInteger)
    conflict: Mapped[int] = mapped_column(BigInteger)  # same id, another body: not stored
    rejected: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class ImportRejectionRow(Base):
    """A row of an import's file that was not stored, and why (the rejected-rows report)."""

    __tablename__ = "import_rejections"

    task_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    row: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # 1-based line / row
    field: Mapped[str | None] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(Text)
    excerpt: Mapped[str | None] = mapped_column(Text)  # the start of the raw row


class AuditEventRow(Base):
    """Who erased or pruned what, and how much: counts and ids of ours, never the personal
    data that was erased (no user id, query or text)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(50))
    actor: Mapped[str] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_audit_events_created", "created_at", "id"),)


# -- judged evaluation sets ---------------------------------------------------------------------


class EvaluationSetRow(Base):
    """A frozen set of judged queries; never updated (a new version is a new set)."""

    __tablename__ = "evaluation_sets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    queries_count: Mapped[int] = mapped_column(Integer)
    judgements_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("name", name="uq_evaluation_sets_name"),
        Index("ix_evaluation_sets_created", "created_at", "id"),
    )


class EvaluationQueryRow(Base):
    __tablename__ = "evaluation_queries"

    set_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("evaluation_sets.id", ondelete="CASCADE"), primary_key=True
    )
    query_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # order as posted
    text: Mapped[str] = mapped_column(Text)


class EvaluationJudgementRow(Base):
    """One judged (query, item) pair; grade > 0 is relevant, higher is more relevant."""

    __tablename__ = "evaluation_judgements"

    set_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    query_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    object_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    grade: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        ForeignKeyConstraint(
            ["set_id", "query_id"],
            ["evaluation_queries.set_id", "evaluation_queries.query_id"],
            ondelete="CASCADE",
        ),
    )


# -- aliases --------------------------------------------------------------------------------------


class AliasRow(Base):
    """A name for the live iteration (e.g. `production`); `version` counts its changes and is
    the compare-and-set guard of every change."""

    __tablename__ = "aliases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    model_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("embedding_models.id", ondelete="RESTRICT")
    )
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(200))
    # the vector sink this alias serves from (a validated sink config), or None: promoting a
    # model to an alias with a sink reindexes that sink, and the alias is live once it is done
    sink: Mapped[dict[str, Any] | None]


class AliasChangeRow(Base):
    """One change of an alias, written in the transaction that makes it; (alias, version) is
    unique, so two writers that read the same version cannot both record a change."""

    __tablename__ = "alias_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alias: Mapped[str] = mapped_column(
        String(100), ForeignKey("aliases.name", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))  # set | promote | rollback
    model_id: Mapped[str] = mapped_column(String(32))
    previous_model_id: Mapped[str | None] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("alias", "version", name="uq_alias_changes_version"),)


# -- vector sinks ---------------------------------------------------------------------------------


class SinkCollectionRow(Base):
    """A collection (Qdrant) or prefix (Parquet) a reindex task wrote into a sink.

    `state`: `writing` while a run fills it, `complete` once written and counted, `live` while
    the sink's alias points to it, `retired` after the alias moved on (kept for rollback, up to
    the retention setting), `dropped` once deleted from the sink."""

    __tablename__ = "sink_collections"

    sink_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    collection: Mapped[str] = mapped_column(String(200), primary_key=True)
    sink_type: Mapped[str] = mapped_column(String(50))
    sink: Mapped[dict[str, Any]]
    model_id: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    items: Mapped[int] = mapped_column(Integer)
    dim: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_sink_collections_model", "model_id", "state", "updated_at"),
        Index("ix_sink_collections_sink", "sink_key", "state", "updated_at"),
    )


# -- measured throughput --------------------------------------------------------------------------


class ThroughputSampleRow(Base):
    """One figure a worker measured in a run: an encode or train rate (`units` estimated tokens
    in `seconds`), or the run's fixed costs (`kind` "fixed": load, examples, save; `units` 1).
    Preflight and a running task's ETA read the recent ones of a host; older ones are pruned."""

    __tablename__ = "throughput_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    model_params: Mapped[int] = mapped_column(BigInteger)
    model_id: Mapped[str | None] = mapped_column(String(32))
    requested_precision: Mapped[str] = mapped_column(String(10))
    precision: Mapped[str] = mapped_column(String(10))
    device: Mapped[str] = mapped_column(String(20))
    seq_length: Mapped[int] = mapped_column(Integer)
    batch_size: Mapped[int] = mapped_column(Integer)
    units: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    task_id: Mapped[str | None] = mapped_column(String(32))
    recorded_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_throughput_samples_host", "host", "kind", "recorded_at"),
        Index("ix_throughput_samples_recorded", "recorded_at"),
    )


# -- webhooks -------------------------------------------------------------------------------------


class WebhookEndpointRow(Base):
    """A receiver registered for some event types. `secret` signs every payload (Standard
    Webhooks); an endpoint is disabled after too many failed deliveries in a row."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookMessageRow(Base):
    """The outbox: one row per event, written in the transaction of the state change it
    announces (so a rolled-back change announces nothing). `id` is the `webhook-id` every
    delivery of it carries; `dispatched_at` is set once it was fanned out into deliveries."""

    __tablename__ = "webhook_messages"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    dispatched_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_webhook_messages_dispatch", "dispatched_at", "created_at"),)


class WebhookDeliveryRow(Base):
    """One message to one endpoint: pending until a sender claims it (`claimed_until`, a lease),
    then delivered, or pending again at `next_attempt_at` (backoff), or failed for good."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    message_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("webhook_messages.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),
    )


# -- hyperparameter search ------------------------------------------------------------------------


class SearchTrialRow(Base):
    """One trial of a task's hyperparameter search: its params, the validation values it
    reported during training (`intermediate`, [step, value] pairs, what the pruner saw) and its
    end state. A re-queued search rebuilds its study from these rows and goes on."""

    __tablename__ = "search_trials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(32), ForeignKey("tasks.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    value: Mapped[float | None] = mapped_column(Float)
    intermediate: Mapped[list[Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    detail: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("task_id", "number", name="uq_search_trials_number"),)
