"""Webhook endpoints and their deliveries on the wire. The secret appears in one answer only:
`WebhookCreated`, the answer to registering the endpoint."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from embtune.domain.webhooks import URL_MAX_LENGTH, DeliveryStatus, WebhookEvent
from embtune.schemas.common import NO_NUL

# Documented shapes, checked by the service (whose 422 says what is wrong in words, not as a
# regular expression), along with what no pattern states: a host, no credentials, a public
# address, a secret of 24 to 64 bytes.
URL_PATTERN = r"^https?://[^\s\x00]+$"
SECRET_PATTERN = r"^whsec_[A-Za-z0-9+/]{32,88}={0,2}$"

EVENTS_DESCRIPTION = (
    "The events sent to this endpoint: `task.processing`, `task.done`, `task.failed`, "
    "`task.refused`, `task.canceled`, `alias.updated`, `reindex.completed`."
)
URL_DESCRIPTION = (
    "Where deliveries are POSTed: http:// or https://, no credentials. Loopback, private and "
    "link-local hosts are refused unless `EMBTUNE_WEBHOOK_ALLOW_PRIVATE_URLS` is set."
)


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=URL_MAX_LENGTH, pattern=NO_NUL,
                     description=URL_DESCRIPTION, json_schema_extra={"pattern": URL_PATTERN})
    events: list[WebhookEvent] = Field(min_length=1, max_length=len(WebhookEvent),
                                       description=EVENTS_DESCRIPTION)
    secret: str | None = Field(
        default=None, max_length=200, pattern=NO_NUL,
        json_schema_extra={"pattern": SECRET_PATTERN},
        description="The signing secret, `whsec_` + base64 of 24 to 64 bytes (Standard "
        "Webhooks). Left out: one is generated. Returned once, in this call's answer.",
    )
    description: str | None = Field(default=None, max_length=500, pattern=NO_NUL)


class WebhookUpdate(BaseModel):
    """Fields left out keep their value. `enabled: true` also restarts the failure count."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=URL_MAX_LENGTH,
                            pattern=NO_NUL, description=URL_DESCRIPTION,
                            json_schema_extra={"pattern": URL_PATTERN})
    events: list[WebhookEvent] | None = Field(default=None, min_length=1,
                                              max_length=len(WebhookEvent),
                                              description=EVENTS_DESCRIPTION)
    description: str | None = Field(default=None, max_length=500, pattern=NO_NUL)
    enabled: StrictBool | None = None


class WebhookPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    events: list[WebhookEvent]
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(description="Why it was disabled, when it is.")
    consecutive_failures: int = Field(
        description="Failed attempts in a row; at `EMBTUNE_WEBHOOK_DISABLE_AFTER_FAILURES` the "
        "endpoint is disabled."
    )
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="The signing secret. Shown this once: keep it.")


class DeliveryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    endpoint_id: str
    message_id: str = Field(description="The `webhook-id` header: the same for every attempt "
                            "and redelivery of one message (de-duplicate on it).")
    event_type: str
    payload: dict[str, Any] = Field(description="The body that is signed and sent.")
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
