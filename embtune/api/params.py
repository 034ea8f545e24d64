"""Path and query parameter types that need FastAPI, kept out of the framework-free schemas."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from embtune.api.errors import query_error
from embtune.domain.tasks import TaskStatus
from embtune.schemas.common import NO_NUL

PathId = Annotated[str, Path(pattern=NO_NUL)]

# Documents the values `TaskStatus.parse` accepts (any case, surrounding blanks); the check itself
# is `parse_status`, whose 422 lists the valid statuses.
STATUS_PATTERN = r"^\s*(" + "|".join(
    "".join(f"[{c.lower()}{c.upper()}]" for c in status.value) for status in TaskStatus
) + r")\s*$"
StatusQuery = Annotated[
    str | None,
    Query(
        alias="status",
        max_length=32,
        description="Any case: pending, PROCESSING, …",
        json_schema_extra={"pattern": STATUS_PATTERN},
    ),
]


def parse_status(value: str | None) -> TaskStatus | None:
    """A task list's `?status=` filter; a 422 naming `status` and the valid values."""
    if value is None:
        return None
    try:
        return TaskStatus.parse(value)
    except ValueError as exc:
        raise query_error("status", str(exc)) from None
