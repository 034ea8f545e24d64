"""API schemas, separate from tables and domain objects: what clients send and receive."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from embtune.domain.models import EmbeddingModel
from embtune.domain.tasks import Task, TaskEvent, TaskStatus

Id = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-.:]+$")

# PostgreSQL text cannot hold NUL: such text is refused here (422 naming the field), so both
# databases answer alike and no insert or lookup fails inside the database with a 500.
NO_NUL = r"^[^\x00]*$"
PathId = Annotated[str, Path(pattern=NO_NUL)]


# Bounds on every free-form JSON field (task `params`/`metadata`, item and result `meta`, session
# `search_meta`), each field on its own. Deeper JSON is stored but cannot be serialized back
# (pydantic's serializer stops at a fixed depth), so one such row made every later list a 500.
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


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embedding_model_id: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200, pattern=NO_NUL)
    batch_id: str | None = Field(None, min_length=1, max_length=64, pattern=NO_NUL)
    params: JsonObject = None
    metadata: JsonObject = None


class TaskProgress(BaseModel):
    model_config = ConfigDict(extra="allow")

    fraction: float = 0.0
    step: int = 0
    total_steps: int = 0
    message: str = ""


class TaskPublic(BaseModel):
    id: str
    status: TaskStatus
    embedding_model_id: str
    idempotency_key: str | None
    batch_id: str | None
    params: dict[str, Any]
    metadata: dict[str, Any]
    broker_id: str | None
    progress: TaskProgress
    metrics: dict[str, Any] | None
    result_model_id: str | None
    detail: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None

    @classmethod
    def of(cls, task: Task) -> TaskPublic:
        return cls(
            id=task.id,
            status=task.status,
            embedding_model_id=task.embedding_model_id,
            idempotency_key=task.idempotency_key,
            batch_id=task.batch_id,
            params=task.params,
            metadata=task.metadata,
            broker_id=task.broker_id,
            progress=TaskProgress(**task.progress.to_dict()),
            metrics=task.metrics,
            result_model_id=task.result_model_id,
            detail=task.detail,
            attempts=task.attempts,
            created_at=task.created_at,
            updated_at=task.updated_at,
            started_at=task.started_at,
            finished_at=task.finished_at,
            heartbeat_at=task.heartbeat_at,
        )


class TaskEventPublic(BaseModel):
    id: int
    kind: str
    from_status: TaskStatus | None
    to_status: TaskStatus | None
    message: str
    created_at: datetime

    @classmethod
    def of(cls, event: TaskEvent) -> TaskEventPublic:
        return cls(
            id=event.id,
            kind=event.kind,
            from_status=event.from_status,
            to_status=event.to_status,
            message=event.message,
            created_at=event.created_at,
        )


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


class ModelPublic(BaseModel):
    id: str
    name: str
    plugin_name: str
    source: str
    parent_id: str | None
    task_id: str | None
    metrics: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def of(cls, model: EmbeddingModel) -> ModelPublic:
        return cls(
            id=model.id,
            name=model.name,
            plugin_name=model.plugin_name,
            source=model.source,
            parent_id=model.parent_id,
            task_id=model.task_id,
            metrics=model.metrics,
            created_at=model.created_at,
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


class PreflightPublic(BaseModel):
    """Common fields; each method adds its own figures (sessions, clicks, examples, …)."""

    model_config = ConfigDict(extra="allow")

    embedding_model_id: str
    plugin_name: str
    batch_id: str | None
    params: dict[str, Any]
    would_refuse: bool
    reason: str | None = None
    estimated_seconds: float | None = None


class Readiness(BaseModel):
    status: str = Field(description="`ready` or `not ready`.")
    checks: dict[str, str] = Field(description="`ok` or why it is unreachable, per dependency.")


# -- errors ---------------------------------------------------------------------------------------
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
    spec lists every status a route can answer (the schema fuzz test holds it to that)."""
    notes = {**ERROR_DESCRIPTIONS, **(described or {})}
    return {
        code: {"model": ValidationErrorBody if code == 422 else ErrorBody,
               "description": notes[code]}
        for code in codes
    }
