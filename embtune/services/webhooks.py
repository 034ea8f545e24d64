"""Webhook endpoints and their delivery log: the use cases behind `/api/v1/webhooks`.

Everything a caller can get wrong (a URL, an event name, a secret) is checked before the one
transaction that stores the endpoint, so a refused request stores nothing. The secret is given
back once, by `create`; nothing afterwards returns it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from embtune.config import Settings
from embtune.domain.webhooks import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    new_secret,
    secret_problem,
)
from embtune.errors import Conflict, NotFound
from embtune.services.field_errors import field_error, raise_invalid
from embtune.services.webhook_destinations import (
    DestinationRefused,
    Resolver,
    check_destination,
    resolve,
)
from embtune.storage.db import Database
from embtune.storage.webhooks_repo import WebhookRepository

# how `update` is told "leave this field as it is" (None is a value: no description)
KEEP: Any = object()


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once


class WebhookService:
    def __init__(self, db: Database, settings: Settings, resolver: Resolver = resolve) -> None:
        self.db = db
        self.allow_private = settings.webhook_allow_private_urls
        self.resolver = resolver
        self.repo = WebhookRepository()

    def create(
        self,
        url: str,
        events: Sequence[WebhookEvent],
        *,
        secret: str | None = None,
        description: str | None = None,
    ) -> CreatedEndpoint:
        errors = self._url_errors(url)
        if secret is not None and (problem := secret_problem(secret)) is not None:
            errors.append(field_error(["secret"], f"Value error, secret {problem}", "value_error"))
        raise_invalid(errors)
        secret = secret or new_secret()
        with self.db.transaction() as session:
            endpoint = self.repo.add_endpoint(
                session, url=url, events=_unique(events), secret=secret, description=description
            )
        return CreatedEndpoint(endpoint, secret)

    def page(self, *, offset: int, limit: int) -> tuple[list[WebhookEndpoint], int]:
        with self.db.read() as session:
            return self.repo.page(session, offset=offset, limit=limit)

    def get(self, endpoint_id: str) -> WebhookEndpoint:
        with self.db.read() as session:
            return self._found(self.repo.get(session, endpoint_id), endpoint_id)

    def update(
        self,
        endpoint_id: str,
        *,
        url: str = KEEP,
        events: Sequence[WebhookEvent] = KEEP,
        description: str | None = KEEP,
        enabled: bool = KEEP,
    ) -> WebhookEndpoint:
        values: dict[str, Any] = {}
        if url is not KEEP:
            raise_invalid(self._url_errors(url))
            values["url"] = url
        if events is not KEEP:
            values["events"] = _unique(events)
        if description is not KEEP:
            values["description"] = description
        if enabled is not KEEP:
            values["enabled"] = enabled
        with self.db.transaction() as session:
            if not values:
                return self._found(self.repo.get(session, endpoint_id), endpoint_id)
            updated = self.repo.update_endpoint(session, endpoint_id, values)
            return self._found(updated, endpoint_id)

    def delete(self, endpoint_id: str) -> None:
        with self.db.transaction() as session:
            if not self.repo.delete_endpoint(session, endpoint_id):
                raise NotFound(f"webhook endpoint {endpoint_id!r} not found")

    def deliveries(
        self,
        endpoint_id: str,
        *,
        offset: int,
        limit: int,
        status: DeliveryStatus | None = None,
    ) -> tuple[list[WebhookDelivery], int]:
        with self.db.read() as session:
            self._found(self.repo.get(session, endpoint_id), endpoint_id)
            return self.repo.deliveries_of(
                session, endpoint_id, offset=offset, limit=limit, status=status
            )

    def redeliver(self, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
        """Send a delivery's message again, as a new delivery with the same `webhook-id`. A
        disabled endpoint is refused (409): the new delivery would wait until it is enabled,
        which is better said now than discovered later."""
        with self.db.transaction() as session:
            endpoint = self._found(self.repo.get(session, endpoint_id), endpoint_id)
            if not endpoint.enabled:
                raise Conflict(
                    f"webhook endpoint {endpoint_id!r} is disabled "
                    f"({endpoint.disabled_reason}); enable it first"
                )
            new_id = self.repo.redeliver(session, endpoint_id, delivery_id)
            if new_id is None:
                raise NotFound(
                    f"delivery {delivery_id!r} of webhook endpoint {endpoint_id!r} not found"
                )
            delivery = self.repo.get_delivery(session, endpoint_id, new_id)
        assert delivery is not None
        return delivery

    def _url_errors(self, url: str) -> list[dict[str, Any]]:
        try:
            check_destination(
                url, allow_private=self.allow_private, resolver=self.resolver,
                must_resolve=False,
            )
        except DestinationRefused as exc:
            return [field_error(["url"], f"Value error, url {exc}", "value_error")]
        return []

    @staticmethod
    def _found(endpoint: WebhookEndpoint | None, endpoint_id: str) -> WebhookEndpoint:
        if endpoint is None:
            raise NotFound(f"webhook endpoint {endpoint_id!r} not found")
        return endpoint


def _unique(events: Sequence[WebhookEvent]) -> list[WebhookEvent]:
    """In the order given, each once."""
    return list(dict.fromkeys(WebhookEvent(e) for e in events))
