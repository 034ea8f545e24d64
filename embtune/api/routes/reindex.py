"""`/api/v1/reindex`: reindex tasks (write a model's catalogue vectors into a vector sink), and
what they make readable: `/api/v1/search`, a model's Parquet vectors and its collections.

Reindex tasks share the fine-tuning tasks' lifecycle and verbs (`TaskService` with
`TaskKind.reindex`): a task of the other kind is 404 here, as a reindex task is 404 under
`/api/v1/fine-tuning`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import IO, Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from embtune.api.deps import AliasesDep, ReindexDep, TasksDep
from embtune.api.params import PathId, StatusQuery, parse_status
from embtune.api.responses import UNDECODABLE, error_responses
from embtune.domain.tasks import TaskKind
from embtune.errors import Unavailable
from embtune.schemas.common import NO_NUL
from embtune.schemas.reindex import (
    ReindexCreate,
    ReindexTaskPublic,
    SearchRequest,
    SearchResponse,
    SinkCollectionPublic,
)
from embtune.schemas.tasks import TaskEventPublic
from embtune.sinks.base import SinkError

router = APIRouter(
    prefix="/api/v1/reindex", tags=["reindex"], responses=error_responses(401, 503)
)
# Search and vectors read what reindex tasks wrote; their paths are the model registry's and
# the service's, not under `/reindex`.
search_router = APIRouter(prefix="/api/v1", tags=["reindex"], responses=error_responses(401, 503))

KIND = TaskKind.reindex
PARQUET = "application/vnd.apache.parquet"
CHUNK_BYTES = 1024 * 1024
UNKNOWN_TASK = {404: "Unknown reindex task"}
CREATE_ERRORS = {
    400: UNDECODABLE,
    404: "Unknown embedding model (`model_id: …`) or alias (`alias: …`)",
    409: "Idempotency key used with another body",
    422: "Invalid body: not exactly one of `model_id` and `alias`, or a sink config its sink "
    "type refuses (named `sink.<field>`)",
}
SINK_DOWN = "The sink cannot be reached or read; retry later"


@router.post(
    "/task",
    response_model=ReindexTaskPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": ReindexTaskPublic,
              "description": "Existing task for this idempotency key"},
        **error_responses(400, 404, 409, 413, 422, described=CREATE_ERRORS),
    },
)
async def create_reindex_task(
    body: ReindexCreate, reindex: ReindexDep, response: Response
) -> ReindexTaskPublic:
    """Write a model's catalogue vectors into a new collection of a sink and switch the sink's
    alias to it once complete; or return the task this idempotency key already made (200)."""
    task, created = await run_in_threadpool(lambda: reindex.create(**body.model_dump()))
    if not created:
        response.status_code = status.HTTP_200_OK
    return ReindexTaskPublic.model_validate(task)


@router.get("/task", response_model=list[ReindexTaskPublic], responses=error_responses(422))
async def list_reindex_tasks(
    reindex: ReindexDep,
    response: Response,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    status_: StatusQuery = None,
    embedding_model_id: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
) -> list[ReindexTaskPublic]:
    """Reindex tasks only, newest first; `X-Total-Count` carries the filtered total."""
    parsed = parse_status(status_)
    page, total = await run_in_threadpool(
        lambda: reindex.page(
            offset=offset, limit=limit, status=parsed, embedding_model_id=embedding_model_id
        )
    )
    response.headers["X-Total-Count"] = str(total)
    return [ReindexTaskPublic.model_validate(t) for t in page]


@router.get(
    "/task/{task_id}",
    response_model=ReindexTaskPublic,
    responses=error_responses(404, 422, described=UNKNOWN_TASK),
)
async def get_reindex_task(task_id: PathId, tasks: TasksDep) -> ReindexTaskPublic:
    task = await run_in_threadpool(lambda: tasks.get(task_id, kind=KIND))
    return ReindexTaskPublic.model_validate(task)


@router.get(
    "/task/{task_id}/events",
    response_model=list[TaskEventPublic],
    responses=error_responses(404, 422, described=UNKNOWN_TASK),
)
async def reindex_task_events(task_id: PathId, tasks: TasksDep) -> list[TaskEventPublic]:
    """Transitions, progress messages and the switch, oldest first."""
    events = await run_in_threadpool(lambda: tasks.events(task_id, kind=KIND))
    return [TaskEventPublic.model_validate(e) for e in events]


@router.put(
    "/task/{task_id}/restart",
    response_model=ReindexTaskPublic,
    responses=error_responses(
        404, 409, 422,
        described={**UNKNOWN_TASK, 409: "The task is done: its sink serves what it wrote"},
    ),
)
async def restart_reindex_task(task_id: PathId, tasks: TasksDep) -> ReindexTaskPublic:
    """Back to pending with a new message; a processing task is returned unchanged; a done
    one is 409 (create a new reindex task to write the vectors again)."""
    task = await run_in_threadpool(lambda: tasks.restart(task_id, kind=KIND))
    return ReindexTaskPublic.model_validate(task)


@router.put(
    "/task/{task_id}/cancel",
    response_model=ReindexTaskPublic,
    responses=error_responses(
        404, 409, 422, described={**UNKNOWN_TASK, 409: "The task already finished"}
    ),
)
async def cancel_reindex_task(task_id: PathId, tasks: TasksDep) -> ReindexTaskPublic:
    """Pending or processing → canceled (what it wrote is dropped, the sink's alias is not
    moved); canceled → unchanged; finished → 409."""
    task = await run_in_threadpool(lambda: tasks.cancel(task_id, kind=KIND))
    return ReindexTaskPublic.model_validate(task)


@search_router.post(
    "/search",
    response_model=SearchResponse,
    responses=error_responses(
        400, 404, 409, 413, 422,
        described={
            400: UNDECODABLE,
            404: "Unknown alias or embedding model",
            409: "The alias names no sink, its sink has no live collection yet, or the model "
            "has no vectors in any sink: reindex first",
            422: "Invalid body, or not exactly one of `alias` and `model_id`",
            503: SINK_DOWN,
        },
    ),
)
async def search(body: SearchRequest, reindex: ReindexDep) -> SearchResponse:
    """The `k` catalogue items nearest to `query`, embedded by the model whose vectors the
    sink holds: by alias, the alias's sink; by model, its newest complete collection."""
    try:
        result = await run_in_threadpool(
            lambda: reindex.search(query=body.query, k=body.k, alias=body.alias,
                                   model_id=body.model_id)
        )
    except SinkError as exc:
        raise Unavailable(exc.detail) from None
    return SearchResponse.model_validate(result)


async def _chunks(handle: IO[bytes]) -> AsyncIterator[bytes]:
    """The file in 1 MiB reads off the event loop; closed however the response ends."""
    try:
        while chunk := await run_in_threadpool(handle.read, CHUNK_BYTES):
            yield chunk
    finally:
        handle.close()


@search_router.get(
    "/embedding-models/{model_id}/vectors",
    response_class=StreamingResponse,
    responses={
        200: {"content": {PARQUET: {}},
              "description": "Parquet: `object_id`, `vector` (fixed-size list of float32), "
              "`model_id`, `text_hash`"},
        **error_responses(
            404, 422,
            described={404: "No embedding model or alias of this name, or the model has no "
                       "Parquet vectors (create a reindex task with a parquet sink)",
                       503: SINK_DOWN},
        ),
    },
)
async def model_vectors(
    model_id: PathId, reindex: ReindexDep, aliases: AliasesDep
) -> StreamingResponse:
    """The model's newest complete Parquet collection, one row per catalogue item; `model_id`
    may be an alias (the file is named after the model it points at)."""
    model_id = await run_in_threadpool(aliases.resolve, model_id)
    try:
        handle, size, filename = await run_in_threadpool(reindex.vectors_file, model_id)
    except SinkError as exc:
        raise Unavailable(exc.detail) from None
    return StreamingResponse(
        _chunks(handle),
        media_type=PARQUET,
        headers={"Content-Length": str(size),
                 "Content-Disposition": f'attachment; filename="{filename}"'},
    )


@search_router.get(
    "/embedding-models/{model_id}/collections",
    response_model=list[SinkCollectionPublic],
    responses=error_responses(
        404, 422, described={404: "No embedding model or alias of this name"}
    ),
)
async def model_collections(
    model_id: PathId, reindex: ReindexDep, aliases: AliasesDep
) -> list[SinkCollectionPublic]:
    """The model's complete collections in every sink, live first, then newest first;
    `model_id` may be an alias."""
    model_id = await run_in_threadpool(aliases.resolve, model_id)
    found = await run_in_threadpool(reindex.collections_of, model_id)
    return [SinkCollectionPublic.model_validate(c) for c in found]
