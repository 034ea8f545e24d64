"""Aliases on the wire: a name for a model iteration, the history of where it pointed, and what
its vector sink serves."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from embtune.domain.aliases import AliasAction
from embtune.schemas.common import NO_NUL, NOT_A_BOOL
from embtune.schemas.json_object import JsonObject

SINK_DESCRIPTION = (
    'The vector sink the alias serves from: `{"type": "parquet" | "qdrant", "name"?: …, …}` '
    "(each sink type's own fields; secrets are not stored). Each move of the alias then "
    "reindexes the model it points at into the sink. `null`: no sink."
)

REASON_MAX_LENGTH = 1000


class AliasSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    reason: str = Field(default="", max_length=REASON_MAX_LENGTH, pattern=NO_NUL)
    expected_version: Annotated[int, Field(ge=0, le=2**31 - 1), NOT_A_BOOL] | None = Field(
        default=None,
        description="Change only if the alias is at this version (0: only if it does not "
        "exist yet); 409 otherwise. Without it, the last writer wins.",
    )
    sink: JsonObject = Field(
        None, description=f"{SINK_DESCRIPTION} Left out: the alias keeps the sink it has."
    )


class AliasSinkSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sink: JsonObject = Field(description=SINK_DESCRIPTION)


class AliasRollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=REASON_MAX_LENGTH, pattern=NO_NUL)
    expected_version: Annotated[int, Field(ge=1, le=2**31 - 1), NOT_A_BOOL] | None = None


class AliasChangePublic(BaseModel):
    # Read from `AliasChange` by attribute name.

    model_config = ConfigDict(from_attributes=True)

    version: int
    action: AliasAction
    model_id: str
    previous_model_id: str | None
    actor: str
    reason: str
    created_at: datetime


class AliasServing(BaseModel):
    """What the alias's sink serves, against where the alias points."""

    state: Literal["live", "reindexing", "failed", "no_sink"] = Field(
        description="`live`: the sink's live collection holds the alias's model; `reindexing`: "
        "its newest reindex task is pending or running; `failed`: that task ended without "
        "making the sink serve the alias's model (see `detail`); `no_sink`: the alias names "
        "no sink."
    )
    model_id: str | None = Field(
        description="The model whose vectors the sink's live collection holds."
    )
    collection: str | None = Field(description="The sink's live collection.")
    reindex_task_id: str | None = Field(
        description="The newest reindex task created for the alias."
    )
    detail: str


class AliasSummary(BaseModel):
    """An alias in a list: where it points and what its sink serves, without its history."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    model_id: str
    version: int = Field(description="How many times it has changed; the `expected_version` "
                         "guard of the next change.")
    updated_at: datetime
    updated_by: str = Field(description="`user:token`, `user:dashboard`, `api` (no token "
                            "configured) or `task:<id>`.")
    sink: dict[str, Any] | None = Field(description="The sink the alias serves from (its "
                                        "stored config), or null.")
    serving: AliasServing


class AliasPublic(AliasSummary):
    history: list[AliasChangePublic] = Field(description="The newest changes, newest first.")
