"""API schemas of the catalogue and the clickstream: what clients send and receive.

Fixed limits live here as Field bounds; the deployment-tunable ones (query length, results per
session, events per push, item text length) come from settings and are checked by the service.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from embtune.api.schemas import NO_NUL, JsonObject
from embtune.domain.clickstream import Batch, BatchStatus, Item, SessionRecord

_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_date_time(value: Any) -> Any:
    """Only what the spec promises (`format: date-time`): left alone, pydantic would also read
    numbers and digit strings as Unix time, guessing seconds or milliseconds from their size,
    and a bare date as midnight — silently shifting when a click happened."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise PydanticCustomError(
            "datetime_type", "Input should be an ISO 8601 date-time, e.g. 2024-05-01T10:00:00Z"
        )
    return value


def _assume_utc(value: datetime | None) -> datetime | None:
    """Clients often send naive ISO timestamps; they are read as UTC rather than refused.

    Stored in UTC, so a time that has no UTC equivalent (0001-01-01T00:00+01:00) is refused
    here rather than overflowing later (it was a 500)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_range", "Input should be a date-time between years 1 and 9999 in UTC"
        ) from None
    return value


# Ids chosen by the search engine: any printable text, so its own ids pass unchanged.
ExternalId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Timestamp = Annotated[
    datetime | None, BeforeValidator(_iso_date_time), AfterValidator(_assume_utc)
]
Meta = dict[str, Any] | None
MetaIn = JsonObject


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- items ----------------------------------------------------------------------------------------
class ItemIn(_Request):
    object_id: ExternalId
    text: str = Field(min_length=1, pattern=NO_NUL)
    meta: MetaIn = None


class ItemsUpsert(_Request):
    items: list[ItemIn] = Field(min_length=1, max_length=1000)


class ItemsUpserted(BaseModel):
    inserted: int
    updated: int


class ItemPublic(BaseModel):
    object_id: str
    text: str
    meta: Meta
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, item: Item) -> ItemPublic:
        return cls(
            object_id=item.object_id,
            text=item.text,
            meta=item.meta,
            created_at=item.created_at,
            updated_at=item.updated_at,
        )


# -- sessions -------------------------------------------------------------------------------------
class SearchResultIn(_Request):
    object_id: ExternalId
    rank: int | None = Field(None, ge=1, le=1_000_000, description="Default: position + 1.")
    meta: MetaIn = None


class SessionCreate(_Request):
    session_id: ExternalId
    search_query: str = Field(min_length=1, pattern=NO_NUL)
    search_results: list[SearchResultIn] = Field(description="In the order they were shown.")
    user_id: ExternalId | None = None
    created_at: Timestamp = Field(
        None, description="ISO 8601, naive means UTC. Default: when the server received it."
    )
    search_meta: MetaIn = None


class EventIn(_Request):
    event_id: ExternalId = Field(description="Unique per event: a repeated push is skipped.")
    object_id: ExternalId
    event_type: str = Field("click", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    created_at: Timestamp = Field(
        None, description="ISO 8601, naive means UTC. Default: when the server received it."
    )


class EventsPush(_Request):
    session_id: ExternalId
    events: list[EventIn] = Field(min_length=1)


class EventsPushed(BaseModel):
    session_id: str
    received: int
    new: int = Field(description="Events not seen before; repeats are skipped.")


class SessionRef(_Request):
    session_id: ExternalId


class SearchResultPublic(BaseModel):
    object_id: str
    rank: int
    meta: Meta


class EventPublic(BaseModel):
    event_id: str
    object_id: str
    event_type: str
    created_at: datetime


class SessionPublic(BaseModel):
    session_id: str
    batch_id: str
    search_query: str
    user_id: str | None
    created_at: datetime
    search_meta: Meta
    irrelevant: bool
    search_results: list[SearchResultPublic]
    events: list[EventPublic]

    @classmethod
    def of(cls, record: SessionRecord) -> SessionPublic:
        return cls(
            session_id=record.session_id,
            batch_id=record.batch_id,
            search_query=record.query,
            user_id=record.user_id,
            created_at=record.created_at,
            search_meta=record.search_meta,
            irrelevant=record.irrelevant,
            search_results=[
                SearchResultPublic(object_id=r.object_id, rank=r.rank, meta=r.meta)
                for r in record.results
            ],
            events=[
                EventPublic(
                    event_id=e.event_id,
                    object_id=e.object_id,
                    event_type=e.event_type,
                    created_at=e.created_at,
                )
                for e in record.events
            ],
        )


# -- batches --------------------------------------------------------------------------------------
class BatchPublic(BaseModel):
    id: str
    status: BatchStatus
    created_at: datetime
    released_at: datetime | None
    sessions_count: int
    clicks_count: int
    irrelevant_count: int
    late_events: int = Field(
        0, description="Events received after the release; they joined their session and "
        "count for any run that reads the batch afterwards."
    )
    task_ids: list[str] = Field(
        default_factory=list,
        description="Tasks that name this batch, oldest first. A released batch with none "
        "was released by `POST /batch/release` and awaits a task.",
    )

    @classmethod
    def of(cls, batch: Batch) -> BatchPublic:
        return cls(
            id=batch.id,
            status=batch.status,
            created_at=batch.created_at,
            released_at=batch.released_at,
            sessions_count=batch.sessions_count,
            clicks_count=batch.clicks_count,
            irrelevant_count=batch.irrelevant_count,
            late_events=batch.late_events,
            task_ids=list(batch.task_ids),
        )
