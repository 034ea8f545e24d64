"""`/api/v1/fine-tuning`: the task API of SPEC.md."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from embtune.api.deps import TasksDep
from embtune.api.errors import query_error
from embtune.api.schemas import ErrorBody, TaskCreate, TaskEventPublic, TaskPublic
from embtune.domain.tasks import TaskStatus

router = APIRouter(prefix="/api/v1/fine-tuning", tags=["fine-tuning"])

ERRORS = {
    404: {"model": ErrorBody, "description": "Unknown task"},
    409: {"model": ErrorBody, "description": "Conflicts with the task's state"},
}


@router.post(
    "/task",
    response_model=TaskPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": TaskPublic, "description": "Existing task for this idempotency key"},
        400: {"model": ErrorBody},
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
    },
)
def create_task(body: TaskCreate, tasks: TasksDep, response: Response) -> TaskPublic:
    """Create a task, or return the one already created with this idempotency key (200)."""
    task, created = tasks.create(**body.model_dump())
    if not created:
        response.status_code = status.HTTP_200_OK
    return TaskPublic.of(task)


@router.post(
    "/task/preflight",
    responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}},
)
def preflight_task(body: TaskCreate, tasks: TasksDep) -> dict[str, Any]:
    """What a task created with this body would train on, and how long it would take.
    Creates nothing."""
    return tasks.preflight(**body.model_dump())


@router.get("/task", response_model=list[TaskPublic])
def list_tasks(
    tasks: TasksDep,
    response: Response,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    status_: Annotated[
        str | None,
        Query(alias="status", max_length=32, description="Any case: pending, PROCESSING, …"),
    ] = None,
    embedding_model_id: Annotated[str | None, Query(max_length=64)] = None,
) -> list[TaskPublic]:
    """Newest first; `X-Total-Count` carries the filtered total."""
    parsed = None
    if status_ is not None:
        try:
            parsed = TaskStatus.parse(status_)
        except ValueError as exc:
            raise query_error("status", str(exc)) from None
    page, total = tasks.page(
        offset=offset, limit=limit, status=parsed, embedding_model_id=embedding_model_id
    )
    response.headers["X-Total-Count"] = str(total)
    return [TaskPublic.of(t) for t in page]


@router.get("/task/{task_id}", response_model=TaskPublic, responses={404: ERRORS[404]})
def get_task(task_id: str, tasks: TasksDep) -> TaskPublic:
    return TaskPublic.of(tasks.get(task_id))


@router.get(
    "/task/{task_id}/events", response_model=list[TaskEventPublic], responses={404: ERRORS[404]}
)
def task_events(task_id: str, tasks: TasksDep) -> list[TaskEventPublic]:
    """Transitions and progress messages, oldest first."""
    return [TaskEventPublic.of(e) for e in tasks.events(task_id)]


@router.put("/task/{task_id}/restart", response_model=TaskPublic, responses={404: ERRORS[404]})
def restart_task(task_id: str, tasks: TasksDep) -> TaskPublic:
    """Back to pending with a new message; a processing task is returned unchanged."""
    return TaskPublic.of(tasks.restart(task_id))


@router.put("/task/{task_id}/cancel", response_model=TaskPublic, responses=ERRORS)
def cancel_task(task_id: str, tasks: TasksDep) -> TaskPublic:
    """Pending or processing → canceled; canceled → unchanged; finished → 409."""
    return TaskPublic.of(tasks.cancel(task_id))
