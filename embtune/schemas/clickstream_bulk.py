"""Bulk ingestion on the wire: many sessions (or items) in one body, one outcome per row.

A bulk row is a `POST /clickstream/session` body plus the session's `events`, `clicks` (a
shorthand for click events) and `irrelevant` flag — the same shape as a line of the NDJSON
file `embtune clickstream import` reads. Rows are validated one by one (`SESSION_ROW`), so one
bad row is refused on its own while the others are stored; only a body that is not an object
with a `sessions` list (or carries more rows than the server's `bulk_max_rows`) is a 422.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, StrictBool, TypeAdapter

from embtune.schemas.clickstream import EventIn, ExternalId, ItemIn, SessionCreate

RowStatus = Literal["accepted", "duplicate", "conflict", "rejected"]
MAX_ID_LENGTH = 200  # ExternalId's bound


def default_event_id(session_id: str, index: int, tag: str = "c") -> str:
    """`<session_id>-c<index>` for the click at `index` of a row's `clicks` (what `embtune
    clickstream import` has always derived), `<session_id>-e<index>` for an entry of its
    `events`, when sent without an id: replaying the same row (or re-importing the same file)
    records each event once, and adding events to a row does not renumber its clicks. A
    session id too long to take the suffix is replaced by its sha256, keeping the id within
    `ExternalId`'s bound."""
    stem = session_id
    if len(stem) + 8 > MAX_ID_LENGTH:
        stem = hashlib.sha256(session_id.encode()).hexdigest()
    return f"{stem}-{tag}{index}"


class BulkEventIn(EventIn):
    """An event of a bulk row; without `event_id` it gets `default_event_id`."""

    event_id: ExternalId | None = None  # type: ignore[assignment]


def _click(value: Any) -> Any:
    """`"obj-1"` is short for `{"object_id": "obj-1"}`."""
    return {"object_id": value} if isinstance(value, str) else value


class BulkSessionIn(SessionCreate):
    events: list[BulkEventIn] = Field(default_factory=list)
    clicks: list[Annotated[BulkEventIn, BeforeValidator(_click)]] = Field(
        default_factory=list, description="Object ids clicked (or event objects): click events."
    )
    irrelevant: StrictBool = Field(
        False, description="Nothing among the results was relevant; excludes clicks."
    )


SESSION_ROW: TypeAdapter[BulkSessionIn] = TypeAdapter(BulkSessionIn)
ITEM_ROW: TypeAdapter[ItemIn] = TypeAdapter(ItemIn)


class SessionsBulk(BaseModel):
    """Rows are checked one by one by the server (a bad row does not refuse the others), so
    the body only has to be an object with a list."""

    sessions: list[Any] = Field(
        min_length=1,
        description="Up to the server's `bulk_max_rows` session rows, each a session body "
        "with optional `events`, `clicks` and `irrelevant`.",
    )


class FieldErrorOut(BaseModel):
    loc: list[str | int] = Field(description="The field in the row, e.g. `[\"events\", 0]`.")
    msg: str
    type: str


class BulkRowResult(BaseModel):
    index: int = Field(description="The row's position in `sessions` (0-based).")
    session_id: str | None = Field(description="Null when the row has no readable id.")
    status: RowStatus
    new_events: int = Field(0, description="Events this row added (a duplicate may add some).")
    reason: str | None = Field(None, description="Why a row is a conflict or rejected.")
    errors: list[FieldErrorOut] | None = Field(
        None, description="A rejected row's invalid fields, as in a 422."
    )


class BulkSessionsResult(BaseModel):
    accepted: int
    duplicate: int
    conflict: int
    rejected: int
    results: list[BulkRowResult]
