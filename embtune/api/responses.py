"""`responses=` entries for the OpenAPI spec: every error status a route can answer, each with
its body schema (the schema fuzz test holds the routes to that)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embtune.schemas.errors import ErrorBody, ValidationErrorBody

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Well-formed, but cannot be honoured",
    401: "Missing or invalid API token (when `EMBTUNE_API_TOKEN` is set)",
    404: "Not found",
    409: "Conflicts with the resource's state or with an earlier request",
    413: "Request body over `EMBTUNE_MAX_BODY_BYTES`",
    422: "Invalid request; every bad field is named by its location",
    503: "Database or broker unreachable; retry after `Retry-After` seconds",
}
# FastAPI answers a body it cannot even decode (not UTF-8, or nested too deep for the JSON
# parser: hundreds of levels) with 400, before validation.
UNDECODABLE = "The body is not UTF-8 text, or is nested too deep to parse"


def error_responses(
    *codes: int, described: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these error statuses, each with its body schema, so the OpenAPI
    spec lists every status a route can answer."""
    notes = {**ERROR_DESCRIPTIONS, **(described or {})}
    return {
        code: {"model": ValidationErrorBody if code == 422 else ErrorBody,
               "description": notes[code]}
        for code in codes
    }
