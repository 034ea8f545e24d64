"""`/api/v1/fine-tuning`: the fine-tuning task API (create, list, get, events, cancel, restart,
preflight), with the contract EmbeddingStudio's task API had."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from starlette.concurrency import run_in_threadpool

from embtune.api.deps import RuntimeDep, TasksDep
from embtune.api.params import PathId, StatusQuery, parse_status
from embtune.api.responses import UNDECODABLE, error_responses
from embtune.schemas.common import NO_NUL
from embtune.schemas.search import SearchTrialPublic
from embtune.schemas.tasks import PreflightPublic, TaskCreate, TaskEventPublic, TaskPublic

router = APIRouter(
    prefix="/api/v1/fine-tuning", tags=["fine-tuning"], responses=error_responses(401, 503)
)

UNKNOWN_TASK = {404: "Unknown task"}
CREATE_ERRORS = {
    400: f"The model's plugin is not installed or cannot fine-tune; or: {UNDECODABLE}",
    404: "Unknown embedding model or batch",
    422: "Invalid body, or params invalid for the model's plugin (named `params.<field>`)",
}


@router.post(
    "/task",
    response_model=TaskPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": TaskPublic, "description": "Existing task for this idempotency key"},
        **error_responses(
            400, 404, 409, 413, 422,
            described={**CREATE_ERRORS, 409: "Idempotency key used with another body"},
        ),
    },
)
async def create_task(body: TaskCreate, tasks: TasksDep, response: Response) -> TaskPublic:
    """Create a task, or return the one already created with this idempotency key (200)."""
    task, created = await run_in_threadpool(lambda: tasks.create(**body.model_dump()))
    if not created:
        response.status_code = status.HTTP_200_OK
    return TaskPublic.model_validate(task)


@router.post(
    "/task/preflight",
    response_model=PreflightPublic,
    responses=error_responses(400, 404, 413, 422, described=CREATE_ERRORS),
)
async def preflight_task(body: TaskCreate, tasks: TasksDep) -> dict[str, Any]:
    """What a task created with this body would train on, and how long it would take.
    Creates nothing."""
    return await run_in_threadpool(lambda: tasks.preflight(**body.model_dump()))


@router.get("/task", response_model=list[TaskPublic], responses=error_responses(422))
async def list_tasks(
    tasks: TasksDep,
    response: Response,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    status_: StatusQuery = None,
    embedding_model_id: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
) -> list[TaskPublic]:
    """Newest first; `X-Total-Count` carries the filtered total."""
    parsed = parse_status(status_)
    page, total = await run_in_threadpool(
        lambda: tasks.page(
            offset=offset, limit=limit, status=parsed, embedding_model_id=embedding_model_id
        )
    )
    response.headers["X-Total-Count"] = str(total)
    return [TaskPublic.model_validate(t) for t in page]


@router.get(
    "/task/{task_id}",
    response_model=TaskPublic,
    responses=error_responses(404, 422, described=UNKNOWN_TASK),
)
async def get_task(task_id: PathId, tasks: TasksDep) -> TaskPublic:
    return TaskPublic.model_validate(await run_in_threadpool(tasks.get, task_id))


@router.get(
    "/task/{task_id}/events",
    response_model=list[TaskEventPublic],
    responses=error_responses(404, 422, described=UNKNOWN_TASK),
)
async def task_events(task_id: PathId, tasks: TasksDep) -> list[TaskEventPublic]:
    """Transitions and progress messages, oldest first."""
    events = await run_in_threadpool(tasks.events, task_id)
    return [TaskEventPublic.model_validate(e) for e in events]


@router.get(
    "/task/{task_id}/trials",
    response_model=list[SearchTrialPublic],
    responses=error_responses(404, 422, described=UNKNOWN_TASK),
)
async def task_trials(task_id: PathId, runtime: RuntimeDep) -> list[SearchTrialPublic]:
    """The trials of the task's hyperparameter search by number (empty without a search)."""
    trials = await run_in_threadpool(runtime.search_trials.list, task_id)
    return [SearchTrialPublic.model_validate(trial) for trial in trials]


@router.put(
    "/task/{task_id}/restart",
    response_model=TaskPublic,
    responses=error_responses(404, 422, described=UNKNOWN_TASK),
)
async def restart_task(task_id: PathId, tasks: TasksDep) -> TaskPublic:
    """Back to pending with a new message; a processing task is returned unchanged."""
    return TaskPublic.model_validate(await run_in_threadpool(tasks.restart, task_id))


@router.put(
    "/task/{task_id}/cancel",
    response_model=TaskPublic,
    responses=error_responses(
        404, 409, 422, described={**UNKNOWN_TASK, 409: "The task already finished"}
    ),
)
async def cancel_task(task_id: PathId, tasks: TasksDep) -> TaskPublic:
    """Pending or processing → canceled; canceled → unchanged; finished → 409."""
    return TaskPublic.model_validate(await run_in_threadpool(tasks.cancel, task_id))
