"""What a reader hands back: rows with their place in the file, in chunks with a resume point."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from embtune.domain.imports import ImportDataKind, Position

EXCERPT_CHARS = 200

# The columns a Parquet file's rows are read from; the first ones are required. Other columns
# are not read at all (a file may carry more than an import needs).
COLUMNS: dict[ImportDataKind, tuple[str, ...]] = {
    ImportDataKind.sessions: ("session_id", "search_query", "search_results", "user_id",
                              "created_at", "search_meta", "events", "clicks", "irrelevant"),
    ImportDataKind.items: ("object_id", "text", "meta"),
}
REQUIRED: dict[ImportDataKind, tuple[str, ...]] = {
    ImportDataKind.sessions: ("session_id", "search_query", "search_results"),
    ImportDataKind.items: ("object_id", "text"),
}
# Object-valued fields a Parquet file may hold as JSON text (a column of arbitrary objects has
# no Arrow type).
JSON_TEXT_FIELDS = frozenset({"meta", "search_meta"})


class ReadError(Exception):
    """The file as a whole cannot be read as its format (or changed under a resumed import)."""


@dataclass(frozen=True)
class RawRow:
    """One row of the file: its value when it is an object, else why not (field, reason)."""

    number: int  # 1-based: the line (NDJSON) or the row (Parquet)
    value: dict[str, Any] | None
    excerpt: str | None = None
    field: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Chunk:
    rows: list[RawRow]
    position: Position  # where the next chunk starts
    bytes_read: int  # how far into the file (its stored, possibly compressed, bytes)


class ChunkReader(Protocol):
    total_bytes: int  # 0 when unknown
    total_rows: int | None  # known for Parquet

    def chunks(self) -> Iterator[Chunk]: ...

    def close(self) -> None: ...


def excerpt_of(value: Any) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else (
        value if isinstance(value, str) else json.dumps(value, default=str))
    return text.rstrip("\r\n")[:EXCERPT_CHARS]


def plain(value: Any, key: str | None = None) -> Any:
    """A value read from Parquet as the JSON a NDJSON line would hold: date-times as ISO
    strings, missing (null) fields left out, JSON text in object fields decoded."""
    if isinstance(value, dict):
        return {k: plain(v, k) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if key in JSON_TEXT_FIELDS and isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value  # left for validation to name
        return decoded if isinstance(decoded, dict) else value
    return value
