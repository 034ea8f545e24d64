"""API schemas, separate from tables and domain objects: what clients send and receive."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from embtune.domain.models import EmbeddingModel
from embtune.domain.tasks import Task, TaskEvent, TaskStatus

Id = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-.:]+$")


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embedding_model_id: str = Field(min_length=1, max_length=64)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    batch_id: str | None = Field(None, min_length=1, max_length=64)
    params: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class TaskProgress(BaseModel):
    model_config = ConfigDict(extra="allow")

    fraction: float = 0.0
    step: int = 0
    total_steps: int = 0
    message: str = ""


class TaskPublic(BaseModel):
    id: str
    status: TaskStatus
    embedding_model_id: str
    idempotency_key: str | None
    batch_id: str | None
    params: dict[str, Any]
    metadata: dict[str, Any]
    broker_id: str | None
    progress: TaskProgress
    metrics: dict[str, Any] | None
    result_model_id: str | None
    detail: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None

    @classmethod
    def of(cls, task: Task) -> TaskPublic:
        return cls(
            id=task.id,
            status=task.status,
            embedding_model_id=task.embedding_model_id,
            idempotency_key=task.idempotency_key,
            batch_id=task.batch_id,
            params=task.params,
            metadata=task.metadata,
            broker_id=task.broker_id,
            progress=TaskProgress(**task.progress.to_dict()),
            metrics=task.metrics,
            result_model_id=task.result_model_id,
            detail=task.detail,
            attempts=task.attempts,
            created_at=task.created_at,
            updated_at=task.updated_at,
            started_at=task.started_at,
            finished_at=task.finished_at,
            heartbeat_at=task.heartbeat_at,
        )


class TaskEventPublic(BaseModel):
    id: int
    kind: str
    from_status: TaskStatus | None
    to_status: TaskStatus | None
    message: str
    created_at: datetime

    @classmethod
    def of(cls, event: TaskEvent) -> TaskEventPublic:
        return cls(
            id=event.id,
            kind=event.kind,
            from_status=event.from_status,
            to_status=event.to_status,
            message=event.message,
            created_at=event.created_at,
        )


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    plugin_name: str = Field(min_length=1, max_length=100)
    source: str = Field(
        min_length=1,
        max_length=4096,
        description="`builtin:all-MiniLM-L6-v2` or an absolute path to a model directory.",
    )


class ModelPublic(BaseModel):
    id: str
    name: str
    plugin_name: str
    source: str
    parent_id: str | None
    task_id: str | None
    metrics: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def of(cls, model: EmbeddingModel) -> ModelPublic:
        return cls(
            id=model.id,
            name=model.name,
            plugin_name=model.plugin_name,
            source=model.source,
            parent_id=model.parent_id,
            task_id=model.task_id,
            metrics=model.metrics,
            created_at=model.created_at,
        )


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[Annotated[str, Field(max_length=20_000)]] = Field(min_length=1, max_length=256)


class EmbedResponse(BaseModel):
    model_id: str
    dimension: int
    vectors: list[list[float]]


class PluginPublic(BaseModel):
    name: str
    description: str
    trainable: bool
    params_schema: dict[str, Any]


class ErrorBody(BaseModel):
    detail: str | list[dict[str, Any]]
