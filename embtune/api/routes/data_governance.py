"""What is kept and for how long: a retention pass on demand, a user's erasure, the audit trail.

`/api/v1/clickstream/retention/run` and `/api/v1/clickstream/users/{user_id}` sit under the
clickstream's prefix (they act on its data); `/api/v1/audit` is its own resource.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from embtune.api.deps import AuditTrailDep, ErasureDep, RetentionDep
from embtune.api.responses import error_responses
from embtune.api.routes.aliases import actor_of
from embtune.domain.audit import AuditAction
from embtune.schemas.retention import AuditEventPublic, RetentionRunPublic, UserErasedPublic

router = APIRouter(tags=["data governance"], responses=error_responses(401, 503))

UserId = Annotated[
    str, Path(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
              description="The `user_id` the sessions were posted with.")
]


@router.post("/api/v1/clickstream/retention/run", response_model=RetentionRunPublic)
async def run_retention(retention: RetentionDep) -> RetentionRunPublic:
    """Run a retention pass now (it also runs every `retention_interval_s` when
    `clickstream_retention_days` > 0): prune released batches older than the limit that no task
    needs, in bounded chunks. With retention off it only finishes interrupted prunes."""
    report = await run_in_threadpool(retention.run_once)
    return RetentionRunPublic(**report.as_dict())


# `:path` so a user id containing "/" is erased too.
@router.delete(
    "/api/v1/clickstream/users/{user_id:path}",
    response_model=UserErasedPublic,
    # a control character (a line break) keeps a path from matching any route at all
    responses=error_responses(422, 404, described={
        404: "No such route: the user id holds a control character (no user id can)"}),
)
async def erase_user(user_id: UserId, request: Request, erasure: ErasureDep) -> UserErasedPublic:
    """Erase every session of the user, with its shown results and events, in bounded
    transactions; answers what was deleted. An unknown or already-erased user answers zeros
    (200): erasure is idempotent, so an interrupted request is simply sent again. The audit
    trail records the caller and the counts, never the user id."""
    actor = actor_of(request)
    counts = await run_in_threadpool(erasure.erase_user, user_id, actor)
    return UserErasedPublic(**counts.as_dict())


@router.get("/api/v1/audit", response_model=list[AuditEventPublic],
            responses=error_responses(422))
async def list_audit(
    trail: AuditTrailDep,
    response: Response,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    action: Annotated[AuditAction | None, Query(description="Only this action.")] = None,
) -> list[AuditEventPublic]:
    """Erasures and prunes, newest first; `X-Total-Count` carries the total."""
    page, total = await run_in_threadpool(
        lambda: trail.page(offset=offset, limit=limit, action=action.value if action else None)
    )
    response.headers["X-Total-Count"] = str(total)
    return [AuditEventPublic.model_validate(event) for event in page]
