"""`/api/v1/clickstream`: search sessions, their events, and the batches they are trained in."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from starlette.concurrency import run_in_threadpool

from embtune.api.deps import ClickstreamDep
from embtune.api.params import PathId
from embtune.api.responses import UNDECODABLE, error_responses
from embtune.schemas.clickstream import (
    BatchPublic,
    EventsPush,
    EventsPushed,
    SessionCreate,
    SessionPublic,
    SessionRef,
)

router = APIRouter(
    prefix="/api/v1/clickstream", tags=["clickstream"], responses=error_responses(401, 503)
)

UNKNOWN_SESSION = {404: "Unknown session"}


@router.post(
    "/session",
    response_model=SessionPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": SessionPublic, "description": "Same session posted again, same body"},
        **error_responses(
            400, 409, 413, 422,
            described={400: UNDECODABLE, 409: "Same session id with another body",
                       422: "Invalid session: over a size bound, duplicated results, …"},
        ),
    },
)
async def create_session(
    body: SessionCreate, clickstream: ClickstreamDep, response: Response
) -> SessionPublic:
    """Record a search; it joins the open batch."""
    record, created = await run_in_threadpool(
        lambda: clickstream.ingest_session(**body.model_dump())
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return SessionPublic.model_validate(record)


@router.post(
    "/session/events",
    response_model=EventsPushed,
    responses=error_responses(
        400, 404, 409, 413, 422,
        described={
            400: UNDECODABLE,
            **UNKNOWN_SESSION,
            409: "An event id reused for another event, or a click on a session marked "
                 "irrelevant",
            422: "Invalid events: too many, objects not among the session's results, …",
        },
    ),
)
async def push_events(body: EventsPush, clickstream: ClickstreamDep) -> EventsPushed:
    """Record clicks (or other events) on the session's results; all or nothing. An event id
    already stored is skipped, so a push can be repeated safely. Events that arrive after the
    session's batch was released are kept with the session and counted as `late_events`."""
    events = [event.model_dump() for event in body.events]
    received, new = await run_in_threadpool(clickstream.push_events, body.session_id, events)
    return EventsPushed(session_id=body.session_id, received=received, new=new)


@router.post(
    "/session/irrelevant",
    response_model=SessionPublic,
    responses=error_responses(
        400, 404, 409, 413, 422,
        described={400: UNDECODABLE, **UNKNOWN_SESSION, 409: "The session has click events"},
    ),
)
async def mark_irrelevant(body: SessionRef, clickstream: ClickstreamDep) -> SessionPublic:
    """Flag a session whose results held nothing relevant (training uses it as negatives).
    Repeating it is harmless; a session with a click cannot be irrelevant (409)."""
    record = await run_in_threadpool(clickstream.mark_irrelevant, body.session_id)
    return SessionPublic.model_validate(record)


@router.get(
    "/session/{session_id:path}",
    response_model=SessionPublic,
    responses=error_responses(404, 422, described=UNKNOWN_SESSION),
)
async def get_session(session_id: PathId, clickstream: ClickstreamDep) -> SessionPublic:
    return SessionPublic.model_validate(await run_in_threadpool(clickstream.session, session_id))


@router.post(
    "/batch/release",
    response_model=BatchPublic,
    responses=error_responses(409, described={409: "The open batch has no sessions"}),
)
async def release_batch(clickstream: ClickstreamDep) -> BatchPublic:
    """Freeze the open batch for training and open a new one."""
    return BatchPublic.model_validate(await run_in_threadpool(clickstream.release))


@router.get("/batch", response_model=list[BatchPublic], responses=error_responses(422))
async def list_batches(
    clickstream: ClickstreamDep,
    response: Response,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[BatchPublic]:
    """Newest first; `X-Total-Count` carries the total. Each batch lists the tasks that name
    it (`task_ids`), so a released batch no task trains on is visible."""
    page, total = await run_in_threadpool(
        lambda: clickstream.batches_page(offset=offset, limit=limit)
    )
    response.headers["X-Total-Count"] = str(total)
    return [BatchPublic.model_validate(batch) for batch in page]


@router.get(
    "/batch/{batch_id}",
    response_model=BatchPublic,
    responses=error_responses(404, 422, described={404: "Unknown batch"}),
)
async def get_batch(batch_id: PathId, clickstream: ClickstreamDep) -> BatchPublic:
    return BatchPublic.model_validate(await run_in_threadpool(clickstream.batch, batch_id))
