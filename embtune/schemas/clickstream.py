"""The catalogue and the clickstream on the wire: what clients send and receive.

Fixed limits live here as Field bounds; the deployment-tunable ones (query length, results per
session, events per push, item text length) come from settings and are checked by the service.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)
from pydantic_core import PydanticCustomError

from embtune.domain.clickstream import BatchStatus
from embtune.schemas.common import NO_NUL, NOT_A_BOOL
from embtune.schemas.json_object import JsonObject

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


class ItemsDelete(_Request):
    object_ids: list[ExternalId] = Field(min_length=1, max_length=1000)


class ItemsDeleted(BaseModel):
    deleted: int  # how many of the named items existed


class ItemsUpserted(BaseModel):
    inserted: int
    updated: int


class ItemPublic(BaseModel):
    # Read from the domain `Item` by attribute name.

    model_config = ConfigDict(from_attributes=True)

    object_id: str
    text: str
    meta: Meta
    created_at: datetime
    updated_at: datetime


# -- sessions -------------------------------------------------------------------------------------
class SearchResultIn(_Request):
    object_id: ExternalId
    rank: Annotated[int, Field(ge=1, le=1_000_000), NOT_A_BOOL] | None = Field(
        None, description="Default: position + 1."
    )
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
    model_config = ConfigDict(from_attributes=True)

    object_id: str
    rank: int
    meta: Meta


class EventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: str
    object_id: str
    event_type: str
    created_at: datetime


class SessionPublic(BaseModel):
    # Read from the domain `SessionRecord`, whose `query` and `results` are named here as the
    # request names them (`search_query`, `search_results`).

    model_config = ConfigDict(from_attributes=True)

    session_id: str
    batch_id: str
    search_query: str = Field(validation_alias=AliasChoices("search_query", "query"))
    user_id: str | None
    created_at: datetime
    search_meta: Meta
    irrelevant: bool
    search_results: list[SearchResultPublic] = Field(
        validation_alias=AliasChoices("search_results", "results")
    )
    events: list[EventPublic]


# -- batches --------------------------------------------------------------------------------------
class BatchPublic(BaseModel):
    # Read from the domain `Batch` by attribute name.

    model_config = ConfigDict(from_attributes=True)

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
