"""Fine-tuning tasks on the wire: the create body, the task, its events and the preflight."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from embtune.domain.tasks import Progress, TaskStatus, Transition
from embtune.schemas.common import NO_NUL
from embtune.schemas.json_object import JsonObject


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embedding_model_id: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200, pattern=NO_NUL)
    batch_id: str | None = Field(None, min_length=1, max_length=64, pattern=NO_NUL)
    params: JsonObject = None
    metadata: JsonObject = None


class TaskProgress(BaseModel):
    # The domain's `Progress` with its method-specific `extra` (epoch, loss, eta_s) flattened
    # beside the common fields.

    model_config = ConfigDict(extra="allow")

    fraction: float = 0.0
    step: int = 0
    total_steps: int = 0
    message: str = ""


class TaskPublic(BaseModel):
    # Read from the domain `Task` by attribute name (`TaskPublic.model_validate(task)`): a new task
    # field is added here and in `Task`, nowhere else. Fields of `Task` that are not listed
    # (dispatch and worker bookkeeping) stay off the wire.

    model_config = ConfigDict(from_attributes=True)

    id: str
    status: TaskStatus
    embedding_model_id: str
    idempotency_key: str | None
    batch_id: str | None
    params: dict[str, Any]
    metadata: dict[str, Any]
    message_id: str | None
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

    @field_validator("progress", mode="before")
    @classmethod
    def _flatten_progress(cls, value: Any) -> Any:
        return value.to_dict() if isinstance(value, Progress) else value

    # What the dashboard and the CLI may offer, computed from the one table of transitions so
    # neither keeps a status list of its own. Serialized after the stored fields; a client that
    # reads a task computes them again from `status` with the same table.
    @computed_field(  # type: ignore[prop-decorator]
        description="`PUT …/cancel` would cancel it: pending or processing."
    )
    @property
    def can_cancel(self) -> bool:
        return Transition.cancel.allows(self.status)

    @computed_field(  # type: ignore[prop-decorator]
        description="`PUT …/restart` would queue it again: pending, failed, refused or canceled. "
        "False for processing (a live run is answered unchanged, not restarted) and for done "
        "(409: a done task keeps its result; tune again with a new task)."
    )
    @property
    def can_restart(self) -> bool:
        return Transition.restart.allows(self.status)


class TaskEventPublic(BaseModel):
    # Read from the domain `TaskEvent` by attribute name.

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    from_status: TaskStatus | None
    to_status: TaskStatus | None
    message: str
    created_at: datetime


class PreflightPublic(BaseModel):
    """Common fields; each method adds its own figures (sessions, clicks, examples, …)."""

    model_config = ConfigDict(extra="allow")

    embedding_model_id: str
    plugin_name: str
    batch_id: str | None
    params: dict[str, Any]
    would_refuse: bool
    reason: str | None = None
    estimated_seconds: float | None = None
