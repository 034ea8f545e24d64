"""`/readyz`'s answer."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Readiness(BaseModel):
    status: str = Field(description="`ready` or `not ready`.")
    checks: dict[str, str] = Field(description="`ok` or why it is unreachable, per dependency.")
