"""Aliases on the wire: a name for a model iteration, and the history of where it pointed."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from embtune.domain.aliases import AliasAction
from embtune.schemas.common import NO_NUL

REASON_MAX_LENGTH = 1000


class AliasSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    reason: str = Field(default="", max_length=REASON_MAX_LENGTH, pattern=NO_NUL)
    expected_version: int | None = Field(
        default=None,
        ge=0,
        le=2**31 - 1,
        description="Change only if the alias is at this version (0: only if it does not "
        "exist yet); 409 otherwise. Without it, the last writer wins.",
    )


class AliasRollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=REASON_MAX_LENGTH, pattern=NO_NUL)
    expected_version: int | None = Field(default=None, ge=1, le=2**31 - 1)


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


class AliasSummary(BaseModel):
    """An alias in a list: where it points, without its history."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    model_id: str
    version: int = Field(description="How many times it has changed; the `expected_version` "
                         "guard of the next change.")
    updated_at: datetime
    updated_by: str = Field(description="`user:token`, `user:dashboard`, `api` (no token "
                            "configured) or `task:<id>`.")


class AliasPublic(AliasSummary):
    history: list[AliasChangePublic] = Field(description="The newest changes, newest first.")
