"""Error bodies: what every failed request answers."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every error but 422."""

    detail: str


class FieldError(BaseModel):
    loc: list[str | int] = Field(description='Where, e.g. `["body", "params", "steps"]`.')
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """422: each invalid field, named by its location."""

    detail: list[FieldError]
