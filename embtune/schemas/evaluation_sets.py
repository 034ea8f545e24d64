"""Judged evaluation sets on the wire: what a user posts once, and what is read back.

Field-level bounds live here; what needs the whole body or the catalogue (unique query ids,
unique items per query, a relevant item per query, total judgements, known items) is checked by
the service, which names each bad field the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from embtune.domain.evaluation_sets import NAME_MAX_LENGTH, NAME_PATTERN
from embtune.schemas.clickstream import ExternalId
from embtune.schemas.common import NO_NUL, NOT_A_BOOL

MAX_QUERIES = 100_000
MAX_JUDGEMENTS = 1_000_000
MAX_GRADE = 100
MAX_QUERY_TEXT = 20_000
# Queries one `GET …?include_queries=true` answer may carry; larger sets are read in pages.
MAX_INCLUDED_QUERIES = 10_000


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JudgedItem(_Request):
    object_id: ExternalId = Field(description="A catalogue item (`POST /api/v1/items`).")
    grade: Annotated[int, Field(ge=0, le=MAX_GRADE), NOT_A_BOOL] = Field(
        1,
        description="0: judged not relevant; higher: more relevant (the gain in graded NDCG).",
    )


class JudgedQuery(_Request):
    query_id: ExternalId = Field(description="Unique within the set.")
    text: str = Field(min_length=1, max_length=MAX_QUERY_TEXT, pattern=NO_NUL)
    relevant: list[JudgedItem] = Field(
        min_length=1,
        max_length=MAX_JUDGEMENTS,
        description="At least one item with a grade above 0; each item at most once.",
    )


class EvaluationSetCreate(_Request):
    name: str = Field(
        min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN,
        description="Unique; letters, digits, `.`, `_` and `-`, starting with a letter or "
        "digit. Usable wherever an id is.",
    )
    description: str | None = Field(None, max_length=10_000, pattern=NO_NUL)
    queries: list[JudgedQuery] = Field(
        min_length=1,
        max_length=MAX_QUERIES,
        description=f"In the order to keep; at most {MAX_JUDGEMENTS} judged items in all.",
    )


class EvaluationSetPublic(BaseModel):
    # Read from the domain `EvaluationSet` by attribute name.

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str | None
    queries_count: int
    judgements_count: int
    created_at: datetime


class JudgedQueryPublic(BaseModel):
    query_id: str
    text: str
    relevant: list[JudgedItem] = Field(description="Best grade first.")


class EvaluationSetDetail(EvaluationSetPublic):
    queries: list[JudgedQueryPublic] | None = Field(
        None,
        description="In posted order; only with `include_queries=true` (sets of at most "
        f"{MAX_INCLUDED_QUERIES} queries).",
    )


class ModelEvaluationSet(_Request):
    evaluation_set_id: str | None = Field(
        max_length=200,
        pattern=NO_NUL,
        description="The set's id or name; null: the model has no default set.",
    )
