"""The client's webhook calls, as a mixin of `embtune.client.Client`.

Written against `Client`'s plumbing (`_json`, `_page`, `_request`), so the methods can move into
`Client` unchanged.

    with Client() as api:
        hook = api.create_webhook("https://hooks.example.com/embtune", ["task.done"])
        keep_somewhere_safe(hook.secret)  # shown this once
        for delivery in api.webhook_deliveries(hook.id).items:
            ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from embtune.schemas.webhooks import DeliveryPublic, WebhookCreated, WebhookPublic

WEBHOOKS = "/api/v1/webhooks"


class WebhooksClientMixin:
    """Webhook endpoints (signed task, alias and reindex events) and their delivery logs."""

    def create_webhook(
        self,
        url: str,
        events: Sequence[str],
        *,
        secret: str | None = None,
        description: str | None = None,
    ) -> WebhookCreated:
        """The answer carries the signing secret; no later call returns it."""
        body: dict[str, Any] = {"url": url, "events": list(events)}
        if secret is not None:
            body["secret"] = secret
        if description is not None:
            body["description"] = description
        return self._json("POST", WEBHOOKS, WebhookCreated,  # type: ignore[attr-defined]
                          json=body)

    def list_webhooks(self, offset: int = 0, limit: int = 20) -> Any:  # Page[WebhookPublic]
        return self._page(WEBHOOKS, WebhookPublic,  # type: ignore[attr-defined]
                          {"offset": offset, "limit": limit})

    def get_webhook(self, endpoint_id: str) -> WebhookPublic:
        return self._json("GET", f"{WEBHOOKS}/{endpoint_id}",  # type: ignore[attr-defined]
                          WebhookPublic)

    def update_webhook(self, endpoint_id: str, **changes: Any) -> WebhookPublic:
        """`url`, `events`, `description` (None clears it) or `enabled`."""
        return self._json("PATCH", f"{WEBHOOKS}/{endpoint_id}",  # type: ignore[attr-defined]
                          WebhookPublic, json=changes)

    def delete_webhook(self, endpoint_id: str) -> None:
        self._request("DELETE", f"{WEBHOOKS}/{endpoint_id}")  # type: ignore[attr-defined]

    def webhook_deliveries(
        self, endpoint_id: str, offset: int = 0, limit: int = 20, status: str | None = None
    ) -> Any:  # Page[DeliveryPublic]
        return self._page(  # type: ignore[attr-defined]
            f"{WEBHOOKS}/{endpoint_id}/deliveries", DeliveryPublic,
            {"offset": offset, "limit": limit, "status": status},
        )

    def redeliver_webhook(self, endpoint_id: str, delivery_id: str) -> DeliveryPublic:
        return self._json(  # type: ignore[attr-defined]
            "POST", f"{WEBHOOKS}/{endpoint_id}/deliveries/{delivery_id}/redeliver",
            DeliveryPublic,
        )
