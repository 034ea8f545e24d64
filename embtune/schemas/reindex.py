"""Reindex tasks, search and sink collections on the wire.

A reindex task is read like a fine-tuning task (`TaskPublic`) plus its kind and what its params
say (the sink, `incremental`, the alias it serves), so a client need not dig in `params`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    computed_field,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from embtune.domain.evaluation_sets import NAME_MAX_LENGTH, NAME_PATTERN
from embtune.domain.sinks import CollectionState
from embtune.domain.tasks import TaskKind
from embtune.schemas.common import NO_NUL, NOT_A_BOOL
from embtune.schemas.json_object import JsonObject
from embtune.schemas.tasks import TaskPublic

QUERY_MAX_LENGTH = 2000
K_MAX = 100


# The same rule for the OpenAPI spec, so a generated client or a fuzzer knows it: one of the two
# is a string, the other absent or null.
EXACTLY_ONE_SCHEMA = {"anyOf": [
    {"required": ["model_id"],
     "properties": {"model_id": {"type": "string"}, "alias": {"type": "null"}}},
    {"required": ["alias"],
     "properties": {"alias": {"type": "string"}, "model_id": {"type": "null"}}},
]}


def _exactly_one(model: BaseModel, title: str) -> None:
    """`model_id` xor `alias`. Raised as a field error on `model_id`, so the 422's `loc` names a
    field (`["body", "model_id"]`) like every other, not the body as a whole."""
    given = [name for name in ("model_id", "alias") if getattr(model, name) is not None]
    if len(given) == 1:
        return
    msg = ("give exactly one of model_id and alias, not both" if given
           else "give exactly one of model_id and alias")
    raise ValidationError.from_exception_data(title, [InitErrorDetails(
        type=PydanticCustomError("model_id_or_alias", msg),
        loc=("model_id",),
        input=getattr(model, "model_id", None),
    )])


class ReindexCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=EXACTLY_ONE_SCHEMA)

    model_id: str | None = Field(
        None, min_length=1, max_length=64, pattern=NO_NUL,
        description="The model whose vectors to write. Exactly one of `model_id` and `alias`.",
    )
    alias: str | None = Field(
        None, min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN,
        description="Reindex the model this alias points at, into the alias's sink unless "
        "`sink` names another; the task records the alias it serves.",
    )
    sink: JsonObject = Field(
        None,
        description='A sink config: `{"type": "parquet" | "qdrant", "name"?: …, …}` (each '
        "sink type's own fields). Default: the alias's sink, else the default Qdrant sink.",
    )
    incremental: StrictBool = Field(
        False, description="Copy the vectors of unchanged items from this model's last complete "
        "collection in the sink; encode only added and changed items.",
    )
    shards: Annotated[int, Field(ge=1, le=256), NOT_A_BOOL] | None = Field(
        None,
        description="Split a full reindex into this many item ranges, one queue message each, "
        "so several workers write it at once (default: EMBTUNE_REINDEX_SHARD_ITEMS, else 1).",
    )
    idempotency_key: str | None = Field(None, min_length=1, max_length=200, pattern=NO_NUL)
    metadata: JsonObject = None

    @model_validator(mode="after")
    def _one_target(self) -> ReindexCreate:
        _exactly_one(self, "ReindexCreate")
        return self


class ReindexTaskPublic(TaskPublic):
    # Read from the domain `Task` like `TaskPublic`; the fields below the kind are computed from
    # the task's params, so they can never disagree with them.

    kind: TaskKind

    @computed_field(  # type: ignore[prop-decorator]
        description="The sink config the task writes to (secrets never stored)."
    )
    @property
    def sink(self) -> dict[str, Any] | None:
        return self.params.get("sink")

    @computed_field(  # type: ignore[prop-decorator]
        description="Whether unchanged items' vectors are copied from the last collection."
    )
    @property
    def incremental(self) -> bool:
        return bool(self.params.get("incremental", False))

    @computed_field(  # type: ignore[prop-decorator]
        description="The alias this reindex serves, if it was created for one."
    )
    @property
    def alias(self) -> str | None:
        return self.params.get("alias")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=EXACTLY_ONE_SCHEMA)

    alias: str | None = Field(
        None, min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN,
        description="Search the alias's sink (its live collection).",
    )
    model_id: str | None = Field(
        None, min_length=1, max_length=64, pattern=NO_NUL,
        description="Search this model's newest complete collection, in whichever sink.",
    )
    query: str = Field(min_length=1, max_length=QUERY_MAX_LENGTH, pattern=NO_NUL)
    k: int = Field(10, ge=1, le=K_MAX, description="How many hits.")

    @model_validator(mode="after")
    def _one_target(self) -> SearchRequest:
        _exactly_one(self, "SearchRequest")
        return self


class HitPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    object_id: str
    score: float = Field(description="Cosine similarity of the query and the item.")


class SinkRef(BaseModel):
    type: str
    name: str | None


class SearchResponse(BaseModel):
    # Read from the service's `SearchResult` by attribute name.

    model_config = ConfigDict(from_attributes=True)

    hits: list[HitPublic]
    model_id: str = Field(description="The model that embedded the query: the one whose "
                          "vectors the collection holds.")
    collection: str
    sink: SinkRef
    alias: str | None = None
    alias_model_id: str | None = Field(
        None, description="Where the alias points now; differs from `model_id` while a "
        "reindex to the alias's new model has not finished.")
    live: bool = Field(description="The sink serves the alias's current model (always true "
                       "for a search by model).")


class SinkCollectionPublic(BaseModel):
    # Read from the domain `SinkCollection` by attribute name.

    model_config = ConfigDict(from_attributes=True)

    collection: str
    sink_type: str
    sink: dict[str, Any] = Field(description="The sink's stored config (no secrets).")
    sink_key: str = Field(description="Identifies the sink's storage (type, location, name).")
    model_id: str
    task_id: str = Field(description="The reindex task that wrote it.")
    state: CollectionState
    items: int
    dim: int
    created_at: datetime
    updated_at: datetime
