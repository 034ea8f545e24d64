"""`POST /api/v1/clickstream/sessions:bulk`: many sessions in one request, an outcome per row."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from embtune.api.deps import ClickstreamBulkDep
from embtune.api.responses import UNDECODABLE, error_responses
from embtune.schemas.clickstream_bulk import BulkRowResult, BulkSessionsResult, SessionsBulk
from embtune.services.clickstream_bulk import RowOutcome

router = APIRouter(
    prefix="/api/v1/clickstream", tags=["clickstream"], responses=error_responses(401, 503)
)


@router.post(
    "/sessions:bulk",
    response_model=BulkSessionsResult,
    responses=error_responses(
        400, 413, 422,
        described={400: UNDECODABLE,
                   422: "Not an object with a `sessions` list, or more rows than `bulk_max_rows`"},
    ),
)
async def ingest_sessions_bulk(
    body: SessionsBulk, bulk: ClickstreamBulkDep
) -> BulkSessionsResult:
    """Record up to `bulk_max_rows` sessions, each with its results, `events`, `clicks`
    (object ids: click events) and `irrelevant` flag, in one transaction.

    Each row is answered on its own: `accepted` (stored), `duplicate` (the same session id
    with the same body is already stored: nothing changes, except that events not seen before
    are recorded), `conflict` (the id was posted with another body, or an event id names
    another event) or `rejected` (invalid, with the fields in `errors`). A bad row does not
    refuse the others. Events without an `event_id` get `<session_id>-c<index>`, so replaying
    a body records each event once."""
    outcomes = await run_in_threadpool(bulk.ingest, body.sessions)
    return bulk_result(outcomes)


def bulk_result(outcomes: list[RowOutcome]) -> BulkSessionsResult:
    counts = Counter(outcome.status for outcome in outcomes)
    return BulkSessionsResult(
        accepted=counts["accepted"],
        duplicate=counts["duplicate"],
        conflict=counts["conflict"],
        rejected=counts["rejected"],
        results=[
            BulkRowResult(
                index=outcome.index,
                session_id=outcome.key,
                status=outcome.status,  # type: ignore[arg-type]
                new_events=outcome.new_events,
                reason=outcome.reason,
                errors=list(outcome.errors) if outcome.errors else None,  # type: ignore[arg-type]
            )
            for outcome in outcomes
        ],
    )
