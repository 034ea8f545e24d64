"""`/api/v1/items`: the catalogue of searchable documents the clickstream refers to."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from starlette.concurrency import run_in_threadpool

from embtune.api.deps import CatalogueDep
from embtune.api.params import PathId
from embtune.api.responses import UNDECODABLE, error_responses
from embtune.schemas.clickstream import (
    ItemPublic,
    ItemsDelete,
    ItemsDeleted,
    ItemsUpsert,
    ItemsUpserted,
)

router = APIRouter(prefix="/api/v1/items", tags=["items"], responses=error_responses(401, 503))


@router.post(
    "",
    response_model=ItemsUpserted,
    responses=error_responses(
        400, 413, 422,
        described={400: UNDECODABLE, 422: "Invalid items: too long, duplicated object ids, …"},
    ),
)
async def upsert_items(body: ItemsUpsert, catalogue: CatalogueDep) -> ItemsUpserted:
    """Insert new items and overwrite known ones (by object id); all or nothing."""
    rows = [item.model_dump() for item in body.items]
    counts = await run_in_threadpool(catalogue.upsert_items, rows)
    return ItemsUpserted(inserted=counts.inserted, updated=counts.updated)


@router.post(
    "/delete",
    response_model=ItemsDeleted,
    responses=error_responses(400, 413, 422, described={400: UNDECODABLE}),
)
async def delete_items(body: ItemsDelete, catalogue: CatalogueDep) -> ItemsDeleted:
    """Remove items from the catalogue (unknown ids are skipped); the next incremental
    reindex deletes them from its sink."""
    return ItemsDeleted(deleted=await run_in_threadpool(catalogue.delete_items, body.object_ids))


@router.get("", response_model=list[ItemPublic], responses=error_responses(422))
async def list_items(
    catalogue: CatalogueDep,
    response: Response,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[ItemPublic]:
    """Ordered by object id; `X-Total-Count` carries the catalogue size."""
    page, total = await run_in_threadpool(
        lambda: catalogue.items_page(offset=offset, limit=limit)
    )
    response.headers["X-Total-Count"] = str(total)
    return [ItemPublic.model_validate(item) for item in page]


# `:path` so an object id containing "/" still addresses its item.
@router.get(
    "/{object_id:path}",
    response_model=ItemPublic,
    responses=error_responses(404, 422, described={404: "Unknown item"}),
)
async def get_item(object_id: PathId, catalogue: CatalogueDep) -> ItemPublic:
    return ItemPublic.model_validate(await run_in_threadpool(catalogue.item, object_id))


@router.delete(
    "/{object_id:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, 422, described={404: "Unknown item"}),
)
async def delete_item(object_id: PathId, catalogue: CatalogueDep) -> Response:
    await run_in_threadpool(catalogue.delete_item, object_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
