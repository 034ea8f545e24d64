"""`/api/v1/imports`: import tasks (load sessions or items from a file, local or fsspec URL, in
committed chunks) and their rejected-rows reports.

Import tasks share the other kinds' lifecycle and verbs (`TaskService` with `TaskKind.import_`):
a task of another kind is 404 here, as an import is 404 under `/api/v1/fine-tuning`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from embtune.api.deps import ImportsDep, TasksDep
from embtune.api.params import PathId, StatusQuery, parse_status
from embtune.api.responses import UNDECODABLE, error_responses
from embtune.domain.tasks import TaskKind
from embtune.schemas.imports import ImportCreate, ImportTaskPublic
from embtune.schemas.tasks import TaskEventPublic

router = APIRouter(prefix="/api/v1/imports", tags=["imports"],
                   responses=error_responses(401, 503))

KIND = TaskKind.import_
NDJSON = "application/x-ndjson"
UNKNOWN_TASK = {404: "Unknown import task"}
CREATE_ERRORS = {
    400: UNDECODABLE,
    409: "Idempotency key used with another body",
    422: "Invalid body; `url` outside the data dir and EMBTUNE_IMPORT_ROOTS, of an unknown or "
    "uninstalled protocol, or naming no file; `format` not given and not told by the extension",
}


@router.post(
    "",
    response_model=ImportTaskPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": ImportTaskPublic,
              "description": "Existing task for this idempotency key"},
        **error_responses(400, 409, 413, 422, described=CREATE_ERRORS),
    },
)
async def create_import(
    body: ImportCreate, imports: ImportsDep, response: Response
) -> ImportTaskPublic:
    """Read a file of sessions or items into the service in committed chunks; or return the
    task this idempotency key already made (200)."""
    task, created = await run_in_threadpool(lambda: imports.create(**body.model_dump()))
    if not created:
        response.status_code = status.HTTP_200_OK
    return ImportTaskPublic.model_validate(task)


@router.get("", response_model=list[ImportTaskPublic], responses=error_responses(422))
async def list_imports(
    imports: ImportsDep,
    response: Response,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    status_: StatusQuery = None,
) -> list[ImportTaskPublic]:
    """Import tasks only, newest first; `X-Total-Count` carries the filtered total."""
    parsed = parse_status(status_)
    page, total = await run_in_threadpool(
        lambda: imports.page(offset=offset, limit=limit, status=parsed)
    )
    response.headers["X-Total-Count"] = str(total)
    return [ImportTaskPublic.model_validate(t) for t in page]


@router.get(
    "/{task_id}",
    response_model=ImportTaskPublic,
    responses=error_responses(404, 422, described=UNKNOWN_TASK),
)
async def get_import(task_id: PathId, tasks: TasksDep) -> ImportTaskPublic:
    task = await run_in_threadpool(lambda: tasks.get(task_id, kind=KIND))
    return ImportTaskPublic.model_validate(task)


@router.get(
    "/{task_id}/events",
    response_model=list[TaskEventPublic],
    responses=error_responses(404, 422, described=UNKNOWN_TASK),
)
async def import_events(task_id: PathId, tasks: TasksDep) -> list[TaskEventPublic]:
    """Transitions and progress messages, oldest first."""
    events = await run_in_threadpool(lambda: tasks.events(task_id, kind=KIND))
    return [TaskEventPublic.model_validate(e) for e in events]


@router.put(
    "/{task_id}/restart",
    response_model=ImportTaskPublic,
    responses=error_responses(
        404, 409, 422,
        described={**UNKNOWN_TASK, 409: "The import is done: what it stored stays stored"},
    ),
)
async def restart_import(task_id: PathId, imports: ImportsDep) -> ImportTaskPublic:
    """Back to pending with a new message; the run resumes after the last committed chunk. A
    processing import is returned unchanged; a done one is 409."""
    task = await run_in_threadpool(lambda: imports.restart(task_id))
    return ImportTaskPublic.model_validate(task)


@router.put(
    "/{task_id}/cancel",
    response_model=ImportTaskPublic,
    responses=error_responses(
        404, 409, 422, described={**UNKNOWN_TASK, 409: "The import already finished"}
    ),
)
async def cancel_import(task_id: PathId, tasks: TasksDep) -> ImportTaskPublic:
    """Pending or processing → canceled: no chunk is stored after the one being written; the
    chunks already committed stay (a restart continues after them). Canceled → unchanged;
    finished → 409."""
    task = await run_in_threadpool(lambda: tasks.cancel(task_id, kind=KIND))
    return ImportTaskPublic.model_validate(task)


@router.get(
    "/{task_id}/rejections",
    response_class=StreamingResponse,
    responses={
        200: {"content": {NDJSON: {}},
              "description": 'One `{"row", "field", "reason", "excerpt"}` per line, in row '
              "order: `row` is the 1-based line (NDJSON) or row (Parquet) of the file"},
        **error_responses(404, 422, described=UNKNOWN_TASK),
    },
)
async def import_rejections(task_id: PathId, imports: ImportsDep) -> StreamingResponse:
    """The rows of the file that were not stored, and why, so far (the report grows while the
    import runs); streamed, never built whole."""
    lines = await run_in_threadpool(imports.rejection_lines, task_id)
    return StreamingResponse(
        lines,
        media_type=NDJSON,
        headers={"Content-Disposition":
                 f'attachment; filename="import-{task_id}-rejections.ndjson"'},
    )
