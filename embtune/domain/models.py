"""The embedding-model registry's value object."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class EmbeddingModel:
    """A base model or an iteration produced by a fine-tuning task (lineage via parent_id)."""

    id: str
    name: str
    plugin_name: str
    source: str
    parent_id: str | None
    task_id: str | None
    metrics: dict[str, Any] | None
    created_at: datetime
    evaluation_set_id: str | None = None  # judged set its tasks use by default
