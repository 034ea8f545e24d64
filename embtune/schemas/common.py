"""Field patterns and types every request model shares."""

from __future__ import annotations

from typing import Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

# PostgreSQL text cannot hold NUL: such text is refused here (422 naming the field), so both
# databases answer alike and no insert or lookup fails inside the database with a 500.
NO_NUL = r"^[^\x00]*$"


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer, not a boolean")
    return value


# For an integer as JSON Schema means it: `true` is not 1 (Pydantic's lax mode would read it so,
# and the schema fuzz test found `rank: true` stored), while 2 and 2.0 are both the integer 2
# (JSON Schema's `integer` admits a number with no fractional part; StrictInt would not). Use
# it after the bounds, `Annotated[int, Field(ge=1), NOT_A_BOOL]`: bounds given after it are
# published as `ge`/`le` instead of JSON Schema's `minimum`/`maximum`.
NOT_A_BOOL = BeforeValidator(_not_a_bool)
