"""Catalogue items, stored search sessions and batches as the service hands them out.

Frozen value objects, so a route or the worker can hold one without holding a database session.
The training view of a session (`embtune.clickstream.sessions.Session`) is derived from
`SessionRecord` and deliberately smaller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class BatchStatus(StrEnum):
    """`open` collects new sessions (exactly one at a time); `released` takes no new sessions.

    Events and irrelevant marks for a released batch's sessions are still accepted ("with
    the session"): a run reads its batch when it starts, so a later run sees them."""

    open = "open"
    released = "released"
    # released, then emptied by retention: its sessions are deleted, the row stays so tasks
    # that name it still resolve (and say what they trained on is gone)
    pruned = "pruned"


@dataclass(frozen=True)
class Item:
    object_id: str
    text: str
    meta: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SearchResult:
    object_id: str
    rank: int
    meta: dict[str, Any] | None


@dataclass(frozen=True)
class SessionEvent:
    event_id: str
    object_id: str
    event_type: str
    created_at: datetime


@dataclass(frozen=True)
class SessionRecord:
    """A stored search session with everything posted about it, results in rank order."""

    session_id: str
    batch_id: str
    query: str
    user_id: str | None
    search_meta: dict[str, Any] | None
    irrelevant: bool
    created_at: datetime
    results: tuple[SearchResult, ...]
    events: tuple[SessionEvent, ...]  # in click order: created_at, then arrival


@dataclass(frozen=True)
class Batch:
    id: str
    status: BatchStatus
    created_at: datetime
    released_at: datetime | None
    sessions_count: int
    clicks_count: int
    irrelevant_count: int
    late_events: int = 0  # events received after the release; they joined their session
    task_ids: tuple[str, ...] = ()  # tasks that name this batch, oldest first


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int
    updated: int
