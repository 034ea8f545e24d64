"""`/api/v1/evaluation-sets`: judged query sets, posted whole and never changed afterwards, and
a model's default set.

No PUT, PATCH or DELETE: a verdict reached on a set must mean the same judgements later, so a
corrected set is a new set under a new name.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from starlette.concurrency import run_in_threadpool

from embtune.api.deps import EvaluationSetsDep, ModelsDep
from embtune.api.params import PathId
from embtune.api.responses import UNDECODABLE, error_responses
from embtune.errors import BadRequest
from embtune.schemas.evaluation_sets import (
    MAX_INCLUDED_QUERIES,
    EvaluationSetCreate,
    EvaluationSetDetail,
    EvaluationSetPublic,
    JudgedItem,
    JudgedQueryPublic,
    ModelEvaluationSet,
)
from embtune.schemas.models import ModelPublic

router = APIRouter(
    prefix="/api/v1", tags=["evaluation sets"], responses=error_responses(401, 503)
)

UNKNOWN_SET = {404: "Unknown evaluation set"}


@router.post(
    "/evaluation-sets",
    response_model=EvaluationSetPublic,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        400, 409, 413, 422,
        described={
            400: UNDECODABLE,
            409: "An evaluation set of this name exists",
            422: "Invalid set: unknown items, duplicated query or object ids, a query with no "
            "relevant item, grades out of range, too many judgements, a bad name, …",
        },
    ),
)
async def create_evaluation_set(
    body: EvaluationSetCreate, evaluation_sets: EvaluationSetsDep
) -> EvaluationSetPublic:
    """Store a judged set whole (all or nothing); every judged item must be in the catalogue."""
    queries = [query.model_dump() for query in body.queries]
    created = await run_in_threadpool(
        evaluation_sets.create, body.name, body.description, queries
    )
    return EvaluationSetPublic.model_validate(created)


@router.get(
    "/evaluation-sets", response_model=list[EvaluationSetPublic], responses=error_responses(422)
)
async def list_evaluation_sets(
    evaluation_sets: EvaluationSetsDep,
    response: Response,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[EvaluationSetPublic]:
    """Newest first; `X-Total-Count` carries the number of sets."""
    page, total = await run_in_threadpool(
        lambda: evaluation_sets.page(offset=offset, limit=limit)
    )
    response.headers["X-Total-Count"] = str(total)
    return [EvaluationSetPublic.model_validate(s) for s in page]


@router.get(
    "/evaluation-sets/{id_or_name}",
    response_model=EvaluationSetDetail,
    responses=error_responses(
        400, 404, 422,
        described={**UNKNOWN_SET, 400: f"`include_queries` on a set of more than "
                   f"{MAX_INCLUDED_QUERIES} queries"},
    ),
)
async def get_evaluation_set(
    id_or_name: PathId,
    evaluation_sets: EvaluationSetsDep,
    include_queries: Annotated[bool, Query(
        description=f"Also list the queries and their judgements (sets of at most "
        f"{MAX_INCLUDED_QUERIES} queries).")] = False,
) -> EvaluationSetDetail:
    header = await run_in_threadpool(evaluation_sets.get, id_or_name)
    detail = EvaluationSetDetail.model_validate(header)
    if not include_queries:
        return detail
    if header.queries_count > MAX_INCLUDED_QUERIES:
        raise BadRequest(
            f"include_queries: set {header.name!r} has {header.queries_count} queries, more "
            f"than {MAX_INCLUDED_QUERIES} one answer carries; page through "
            f"GET /api/v1/evaluation-sets/{header.id}/queries or run `embtune evalset export`"
        )
    page, _ = await run_in_threadpool(
        lambda: evaluation_sets.queries_page(header.id, offset=0, limit=MAX_INCLUDED_QUERIES)
    )
    detail.queries = _public(page)
    return detail


@router.get(
    "/evaluation-sets/{id_or_name}/queries",
    response_model=list[JudgedQueryPublic],
    responses=error_responses(404, 422, described=UNKNOWN_SET),
)
async def list_evaluation_queries(
    id_or_name: PathId,
    evaluation_sets: EvaluationSetsDep,
    response: Response,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[JudgedQueryPublic]:
    """The set's queries in posted order with their judgements; `X-Total-Count` carries the
    number of queries."""
    page, total = await run_in_threadpool(
        lambda: evaluation_sets.queries_page(id_or_name, offset=offset, limit=limit)
    )
    response.headers["X-Total-Count"] = str(total)
    return _public(page)


def _public(page: list[tuple[str, str, dict[str, int]]]) -> list[JudgedQueryPublic]:
    return [
        JudgedQueryPublic(
            query_id=query_id,
            text=text,
            relevant=[JudgedItem(object_id=o, grade=g) for o, g in grades.items()],
        )
        for query_id, text, grades in page
    ]


@router.put(
    "/embedding-models/{model_id}/evaluation-set",
    response_model=ModelPublic,
    tags=["models"],
    responses=error_responses(
        400, 404, 413, 422,
        described={400: UNDECODABLE, 404: "Unknown embedding model or evaluation set"},
    ),
)
async def set_model_evaluation_set(
    model_id: PathId, body: ModelEvaluationSet, models: ModelsDep
) -> ModelPublic:
    """The judged set (id or name) the model's tasks are scored on unless a task names
    another; `null` clears it."""
    model = await run_in_threadpool(
        models.set_evaluation_set, model_id, body.evaluation_set_id
    )
    return ModelPublic.model_validate(model)
