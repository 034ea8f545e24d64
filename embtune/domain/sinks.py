"""Collections a reindex wrote into a vector sink, and their states."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class CollectionState(enum.StrEnum):
    writing = "writing"  # a run is filling it (or died doing so: swept by the next run)
    live = "live"  # the sink's alias points to it
    retired = "retired"  # complete, the alias moved on; kept for rollback up to the retention
    dropped = "dropped"  # deleted from the sink (failed, canceled, or past the retention)


COMPLETE = frozenset({CollectionState.live, CollectionState.retired})


@dataclass(frozen=True)
class SinkCollection:
    sink_key: str
    collection: str
    sink_type: str
    sink: dict[str, Any]
    model_id: str
    task_id: str
    state: CollectionState
    items: int
    dim: int
    created_at: datetime
    updated_at: datetime
