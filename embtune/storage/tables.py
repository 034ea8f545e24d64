"""ORM tables. Storage details (column names, JSON encoding) stay in this package."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
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

    __table_args__ = (Index("ix_embedding_models_created", "created_at", "id"),)


class TaskRow(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    embedding_model_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("embedding_models.id", ondelete="RESTRICT")
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]
    meta: Mapped[dict[str, Any]]
    broker_id: Mapped[str | None] = mapped_column(String(64))
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
        Index("ix_tasks_status_created", "status", "created_at", "id"),
        Index("ix_tasks_model_created", "embedding_model_id", "created_at", "id"),
        # recovery scans only live tasks
        Index("ix_tasks_status_heartbeat", "status", "heartbeat_at"),
    )


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
