"""The audit trail's values: who erased or pruned clickstream data, and how much of it.

An audit event holds counts and ids of ours (a batch id), never the personal data that was
erased: no user id, no query, no item text. Keeping the user id "to prove it was erased" would
keep the very datum the erasure removes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class AuditAction(StrEnum):
    erase_user = "erase_user"  # every session of one user, on request
    prune_batch = "prune_batch"  # a released batch older than the retention limit


# The actor of background retention passes (requests name theirs: `user:token`, `api`, …).
RETENTION_ACTOR = "retention"


@dataclass(frozen=True)
class AuditEvent:
    id: int
    action: str
    actor: str
    detail: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class DeletedCounts:
    """Rows removed from the clickstream: sessions, their shown results and their events."""

    sessions: int = 0
    results: int = 0
    events: int = 0

    def __add__(self, other: DeletedCounts) -> DeletedCounts:
        return DeletedCounts(
            self.sessions + other.sessions,
            self.results + other.results,
            self.events + other.events,
        )

    def as_dict(self) -> dict[str, int]:
        return {"sessions": self.sessions, "results": self.results, "events": self.events}
