"""`JsonObject`: the bounded free-form JSON type of task `params`/`metadata`, item and result
`meta` and session `search_meta`."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

# Bounds on every free-form JSON field, each field on its own. Deeper JSON is stored but cannot
# be serialized back (pydantic's serializer stops at a fixed depth), so one such row made every
# later list a 500.
MAX_JSON_DEPTH = 32  # nesting levels of objects and arrays; the field's own object is level 1
MAX_JSON_BYTES = 64 * 1024  # the field encoded as compact UTF-8 JSON


def _json_depth_over(value: Any, limit: int) -> bool:
    """Whether `value` nests objects/arrays more than `limit` levels deep. Iterative, and it
    stops at the first container past the limit: any depth (or a cycle) costs no recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _storable_json(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Free-form JSON must be storable and readable back, on both databases.

    It is decoded leniently: NaN/Infinity and lone surrogates ("\\udc00") get through.
    PostgreSQL then refuses the row (a 500), SQLite turns NaN into null, and a stored
    surrogate cannot be encoded again, so every later read of the row would fail. Depth is
    checked first, without recursion, so that encoding the value cannot recurse too deep."""
    if value is None:
        return None
    if _json_depth_over(value, MAX_JSON_DEPTH):
        raise PydanticCustomError(
            "json_too_deep",
            "Input should nest objects and arrays at most {limit} levels deep",
            {"limit": MAX_JSON_DEPTH},
        )
    try:
        encoded = json.dumps(
            value, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
    except (ValueError, UnicodeEncodeError):
        raise PydanticCustomError(
            "json_invalid",
            "Input should be plain JSON: no NaN or Infinity, no unpaired surrogates",
        ) from None
    if len(encoded) > MAX_JSON_BYTES:
        raise PydanticCustomError(
            "json_too_large",
            "Input should be at most {limit} bytes as JSON",
            {"limit": MAX_JSON_BYTES},
        )
    return value


JsonObject = Annotated[
    dict[str, Any] | None,
    AfterValidator(_storable_json),
    Field(description=f"A JSON object, nested at most {MAX_JSON_DEPTH} levels deep and at most "
          f"{MAX_JSON_BYTES} bytes as compact UTF-8 JSON."),
]
