"""Aliases: a stable name (e.g. `production`) for the model iteration that is live, with every
change kept so a rollback knows where to go and an audit knows who moved it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class AliasAction(enum.StrEnum):
    set = "set"  # a user pointed the alias at a model
    promote = "promote"  # a task promoted its tuned model on its verdict
    rollback = "rollback"  # back to the model the alias pointed at before the last change


@dataclass(frozen=True)
class Alias:
    name: str
    model_id: str
    version: int  # number of changes so far; the compare-and-set guard
    updated_at: datetime
    updated_by: str  # `user:<name>`, `api` or `task:<id>`
    # the vector sink the alias serves from (a stored sink config), or None
    sink: dict[str, Any] | None = None


@dataclass(frozen=True)
class AliasChange:
    alias: str
    version: int
    action: AliasAction
    model_id: str
    previous_model_id: str | None
    actor: str
    reason: str
    created_at: datetime
