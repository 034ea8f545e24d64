"""Import tasks' values: what a file holds, in which format, and how far a run has committed.

An import stores its file chunk by chunk; `ImportProgress` is what each chunk's transaction
writes beside the rows it stored, so the figures and the resume point can never disagree with
what is in the database.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

# How a resume point is written: NDJSON {"offset": bytes, "line": n}, Parquet {"row": n};
# both carry the file's "size" so a resume can tell that the file changed underneath it.
Position = dict[str, Any]


class ImportFormat(enum.StrEnum):
    ndjson = "ndjson"
    parquet = "parquet"


class ImportDataKind(enum.StrEnum):
    """What the rows of an import file are."""

    sessions = "sessions"  # one search session per row (the bulk endpoint's row)
    items = "items"  # one catalogue item per row: object_id, text, meta?


# The statuses a row can end in (the bulk services' `RowOutcome.status`).
OUTCOMES = ("accepted", "duplicate", "conflict", "rejected")


@dataclass(frozen=True)
class Rejection:
    """A row of the file that was not stored, and why; `row` is 1-based (NDJSON: the line)."""

    row: int
    reason: str
    field: str | None = None
    excerpt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "reason": self.reason,
                "excerpt": self.excerpt}


@dataclass(frozen=True)
class ImportProgress:
    """An import's committed totals and where its next chunk starts."""

    position: Position = field(default_factory=dict)
    rows_read: int = 0
    bytes_read: int = 0
    chunks: int = 0
    accepted: int = 0
    duplicate: int = 0
    conflict: int = 0
    rejected: int = 0

    def after_chunk(
        self, position: Position, rows: int, bytes_read: int, counts: dict[str, int]
    ) -> ImportProgress:
        """The totals once one more chunk of `rows` rows is committed; `bytes_read` is where
        the file has been read to (not a delta)."""
        return replace(
            self,
            position=dict(position),
            rows_read=self.rows_read + rows,
            bytes_read=bytes_read,
            chunks=self.chunks + 1,
            **{name: getattr(self, name) + counts.get(name, 0) for name in OUTCOMES},
        )

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in OUTCOMES}


def compression_suffix(path: str) -> str | None:
    """The whole-file compression a name says (`.gz`, `.bz2`, `.xz`, `.lzma`), or None."""
    lowered = path.lower()
    for suffix, name in ((".gz", "gzip"), (".bz2", "bz2"), (".xz", "xz"), (".lzma", "lzma")):
        if lowered.endswith(suffix):
            return name
    return None


def format_of(path: str) -> ImportFormat | None:
    """The format a file name says: .jsonl/.ndjson/.json (optionally compressed) → NDJSON,
    .parquet/.pq → Parquet; None when the name says neither."""
    lowered = path.lower()
    if compression_suffix(lowered):
        lowered = lowered.rsplit(".", 1)[0]
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return ImportFormat.ndjson
    if lowered.endswith((".parquet", ".pq")):
        return ImportFormat.parquet
    return None
