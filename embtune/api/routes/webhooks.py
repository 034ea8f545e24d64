"""`/api/v1/webhooks`: endpoints that receive signed task, alias and reindex events, and each
one's delivery log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from starlette.concurrency import run_in_threadpool

from embtune.api.deps import WebhooksDep
from embtune.api.params import PathId
from embtune.api.responses import UNDECODABLE, error_responses
from embtune.domain.webhooks import DeliveryStatus
from embtune.schemas.webhooks import (
    DeliveryPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhookUpdate,
)
from embtune.services.webhooks import KEEP

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"],
                   responses=error_responses(401, 503))

UNKNOWN_ENDPOINT = {404: "Unknown webhook endpoint"}
BAD_FIELD = {422: "A bad field: `url` (scheme, credentials, a private address while "
             "`EMBTUNE_WEBHOOK_ALLOW_PRIVATE_URLS` is off), `events` (an unknown event), "
             "`secret` (not `whsec_` + base64)"}


@router.post(
    "",
    response_model=WebhookCreated,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 413, 422, described={400: UNDECODABLE, **BAD_FIELD}),
)
async def create_webhook(body: WebhookCreate, webhooks: WebhooksDep) -> WebhookCreated:
    """Register an endpoint. The answer carries the signing secret, the only time it is
    shown; deliveries are signed with it (Standard Webhooks)."""
    created = await run_in_threadpool(
        lambda: webhooks.create(body.url, body.events, secret=body.secret,
                                description=body.description)
    )
    public = WebhookPublic.model_validate(created.endpoint)
    return WebhookCreated(**public.model_dump(), secret=created.secret)


@router.get("", response_model=list[WebhookPublic], responses=error_responses(422))
async def list_webhooks(
    webhooks: WebhooksDep,
    response: Response,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[WebhookPublic]:
    """Oldest first; `X-Total-Count` carries how many there are. Secrets are never listed."""
    page, total = await run_in_threadpool(lambda: webhooks.page(offset=offset, limit=limit))
    response.headers["X-Total-Count"] = str(total)
    return [WebhookPublic.model_validate(e) for e in page]


@router.get(
    "/{endpoint_id}", response_model=WebhookPublic,
    responses=error_responses(404, 422, described=UNKNOWN_ENDPOINT),
)
async def get_webhook(endpoint_id: PathId, webhooks: WebhooksDep) -> WebhookPublic:
    return WebhookPublic.model_validate(await run_in_threadpool(webhooks.get, endpoint_id))


@router.patch(
    "/{endpoint_id}",
    response_model=WebhookPublic,
    responses=error_responses(
        400, 404, 413, 422, described={**UNKNOWN_ENDPOINT, 400: UNDECODABLE, **BAD_FIELD}
    ),
)
async def update_webhook(
    endpoint_id: PathId, body: WebhookUpdate, webhooks: WebhooksDep
) -> WebhookPublic:
    """Change the URL, the events, the description, or enable / disable the endpoint. A
    disabled endpoint's pending deliveries wait; enabling it sends them and restarts its
    failure count."""
    given = body.model_fields_set
    changes: dict[str, Any] = {
        "url": body.url if body.url is not None else KEEP,
        "events": body.events if body.events is not None else KEEP,
        "description": body.description if "description" in given else KEEP,
        "enabled": body.enabled if body.enabled is not None else KEEP,
    }
    updated = await run_in_threadpool(lambda: webhooks.update(endpoint_id, **changes))
    return WebhookPublic.model_validate(updated)


@router.delete(
    "/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(404, 422, described=UNKNOWN_ENDPOINT),
)
async def delete_webhook(endpoint_id: PathId, webhooks: WebhooksDep) -> Response:
    """Remove the endpoint and its delivery log; nothing more is sent to it."""
    await run_in_threadpool(webhooks.delete, endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=list[DeliveryPublic],
    responses=error_responses(404, 422, described=UNKNOWN_ENDPOINT),
)
async def list_deliveries(
    endpoint_id: PathId,
    webhooks: WebhooksDep,
    response: Response,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    status_filter: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
) -> list[DeliveryPublic]:
    """The endpoint's delivery log, newest first: each message sent to it, its attempts and
    the last answer. `X-Total-Count` carries the filtered total."""
    page, total = await run_in_threadpool(
        lambda: webhooks.deliveries(endpoint_id, offset=offset, limit=limit,
                                    status=status_filter)
    )
    response.headers["X-Total-Count"] = str(total)
    return [DeliveryPublic.model_validate(d) for d in page]


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(
        404, 409, 422,
        described={404: "Unknown webhook endpoint, or no such delivery of it",
                   409: "The endpoint is disabled; enable it first"},
    ),
)
async def redeliver(
    endpoint_id: PathId, delivery_id: PathId, webhooks: WebhooksDep
) -> DeliveryPublic:
    """Send the delivery's message again, as a new delivery due now, with the same
    `webhook-id` (a receiver that de-duplicates sees the message it already has)."""
    delivery = await run_in_threadpool(webhooks.redeliver, endpoint_id, delivery_id)
    return DeliveryPublic.model_validate(delivery)
