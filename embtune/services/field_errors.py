"""422 field errors raised by services, shaped like FastAPI's request validation errors.

Size bounds that come from settings (raised per deployment) are checked in the services rather
than in the wire schemas; each violation names its field as request validation would, so a
client sees one error format whichever layer refused the body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from embtune.errors import InvalidParams


def field_error(loc: Sequence[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def raise_invalid(errors: list[dict[str, Any]]) -> None:
    if errors:
        fields = ", ".join(".".join(map(str, e["loc"][1:])) for e in errors[:5])
        raise InvalidParams(f"invalid request: {fields}", errors)


def too_long_text(loc: Sequence[str | int], limit: int) -> dict[str, Any]:
    return field_error(loc, f"String should have at most {limit} characters", "string_too_long")


def too_many(loc: Sequence[str | int], limit: int, given: int) -> dict[str, Any]:
    return field_error(
        loc, f"List should have at most {limit} items after validation, not {given}", "too_long"
    )
