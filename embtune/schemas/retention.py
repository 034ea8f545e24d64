"""Data governance on the wire: a retention pass, a user's erasure and the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RetentionRunPublic(BaseModel):
    """What one retention pass deleted."""

    batches: int = Field(description="Batches pruned (or finished after an interrupted pass).")
    kept: int = Field(
        description="Batches old enough to prune, kept because a task needs them (a pending "
        "or processing task names them, or they are a model's newest done task's)."
    )
    sessions: int
    results: int
    events: int
    retention_days: float = Field(
        description="The limit in force (`EMBTUNE_CLICKSTREAM_RETENTION_DAYS`); 0 keeps "
        "everything, and a pass then only finishes interrupted prunes."
    )


class UserErasedPublic(BaseModel):
    """What erasing one user deleted; zeros for an unknown (or already erased) user."""

    sessions: int
    results: int
    events: int


class AuditEventPublic(BaseModel):
    """Who erased or pruned what, and how much: counts and batch ids, never personal data."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    action: str = Field(description="`erase_user` or `prune_batch`.")
    actor: str = Field(
        description="`user:token`, `user:dashboard`, `api` (no token set) or `retention`."
    )
    detail: dict[str, Any] = Field(
        description="Counts (`sessions`, `results`, `events`, `chunks`), `complete` (false: "
        "interrupted, repeat the request) and, for a prune, the `batch_id`."
    )
    created_at: datetime
