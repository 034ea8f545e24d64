"""The embedding-model registry, serving and plugins on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from embtune.schemas.common import NO_NUL


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    plugin_name: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    source: str = Field(
        min_length=1,
        max_length=4096,
        pattern=NO_NUL,
        description="`builtin:all-MiniLM-L6-v2` or an absolute path to a model directory.",
    )
    evaluation_set_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=NO_NUL,
        description="A judged evaluation set (id or name) its tasks are scored on by default.",
    )


class ModelPublic(BaseModel):
    # Read from `EmbeddingModel` by attribute name.

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    plugin_name: str
    source: str
    parent_id: str | None
    task_id: str | None
    metrics: dict[str, Any] | None
    created_at: datetime
    evaluation_set_id: str | None = Field(
        None, description="The judged set its tasks use unless a task names another."
    )


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[Annotated[str, Field(max_length=20_000)]] = Field(min_length=1, max_length=256)


class EmbedResponse(BaseModel):
    model_id: str
    dimension: int
    vectors: list[list[float]]


class PluginPublic(BaseModel):
    name: str
    description: str
    trainable: bool
    params_schema: dict[str, Any]
