"""Webhooks as pure logic: the closed set of event types, their payloads, Standard Webhooks
signing, the retry schedule and the address rules that keep the sender from probing internal
networks.

Nothing here does I/O: storage writes what `task_events` / `alias_event` build into the outbox in
the transaction of the change they announce, and the sender signs and schedules with these
helpers (so each is unit-tested without a network or a database).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import ipaddress
import json
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from embtune.domain.aliases import AliasChange
from embtune.domain.tasks import Task, TaskKind, TaskStatus

SECRET_PREFIX = "whsec_"
# Standard Webhooks: a secret is 24 to 64 random bytes, base64 after the prefix
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
URL_MAX_LENGTH = 2000
SIGNATURE_VERSION = "v1"


class WebhookEvent(enum.StrEnum):
    """Every event an endpoint may subscribe to; an unknown name is refused, never stored."""

    task_processing = "task.processing"
    task_done = "task.done"
    task_failed = "task.failed"
    task_refused = "task.refused"
    task_canceled = "task.canceled"
    alias_updated = "alias.updated"
    reindex_completed = "reindex.completed"


class DeliveryStatus(enum.StrEnum):
    """One message to one endpoint: `pending` until it is delivered or has used its attempts."""

    pending = "pending"
    delivered = "delivered"
    failed = "failed"


@dataclass(frozen=True)
class WebhookEndpoint:
    """A registered receiver. `secret` is here for the sender; no wire schema carries it
    except the answer to the create call."""

    id: str
    url: str
    events: tuple[WebhookEvent, ...]
    secret: str
    description: str | None
    enabled: bool
    disabled_reason: str | None
    consecutive_failures: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class WebhookDelivery:
    """One message to one endpoint, as the delivery log shows it."""

    id: str
    endpoint_id: str
    message_id: str
    event_type: str
    payload: dict[str, Any]
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class DueDelivery:
    """A delivery a sender has claimed for attempt number `attempt`: what it needs to send it
    and to record the outcome (the attempt number is the guard of that record)."""

    id: str
    endpoint_id: str
    url: str
    secret: str
    message_id: str
    payload: dict[str, Any]
    attempt: int


# a task status that is announced, and the event that announces it (pending is not: a task is
# born pending, and a re-queue is the worker's business, not the subscriber's)
TASK_STATUS_EVENTS: dict[TaskStatus, WebhookEvent] = {
    TaskStatus.processing: WebhookEvent.task_processing,
    TaskStatus.done: WebhookEvent.task_done,
    TaskStatus.failed: WebhookEvent.task_failed,
    TaskStatus.refused: WebhookEvent.task_refused,
    TaskStatus.canceled: WebhookEvent.task_canceled,
}


def task_events(task: Task) -> list[tuple[WebhookEvent, dict[str, Any]]]:
    """The events a task's new status announces, each with its `data`. A shard of a sharded
    reindex announces nothing: it is never listed either; its reindex task speaks for it."""
    event = TASK_STATUS_EVENTS.get(task.status)
    if event is None or task.kind is TaskKind.reindex_shard:
        return []
    found = [(event, _task_data(task))]
    if task.kind is TaskKind.reindex and task.status is TaskStatus.done:
        found.append((WebhookEvent.reindex_completed, _reindex_data(task)))
    return found


def _task_data(task: Task) -> dict[str, Any]:
    verdict = (task.metrics or {}).get("verdict")
    return {
        "id": task.id,
        "kind": task.kind.value,
        "status": task.status.value,
        "embedding_model_id": task.embedding_model_id,
        "result_model_id": task.result_model_id,
        "detail": task.detail,
        "attempts": task.attempts,
        "verdict": verdict.get("verdict") if isinstance(verdict, dict) else None,
    }


def _reindex_data(task: Task) -> dict[str, Any]:
    """What a search engine needs to switch over: the model, the alias and where the vectors
    went (sink type and name only: a sink's config may name hosts the subscriber need not see)."""
    metrics = task.metrics or {}
    sink = metrics.get("sink") if isinstance(metrics.get("sink"), dict) else {}
    return {
        "task_id": task.id,
        "model_id": task.embedding_model_id,
        "alias": task.params.get("alias"),
        "sink": {"type": sink.get("type"), "name": sink.get("name")} if sink else None,
        "collection": metrics.get("collection"),
        "written": metrics.get("written"),
        "mode": metrics.get("mode"),
    }


def alias_event(change: AliasChange) -> tuple[WebhookEvent, dict[str, Any]]:
    return WebhookEvent.alias_updated, {
        "name": change.alias,
        "model_id": change.model_id,
        "previous": change.previous_model_id,
        "version": change.version,
        "action": change.action.value,
        "changed_by": change.actor,
        "reason": change.reason,
    }


def envelope(event: WebhookEvent, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    """The body every delivery of one message carries, byte for byte (see `body_bytes`)."""
    return {"type": event.value, "timestamp": at.isoformat(), "data": data}


def body_bytes(payload: dict[str, Any]) -> bytes:
    """One serialization for every attempt: the signature covers these exact bytes."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


# -- signing (https://www.standardwebhooks.com) ---------------------------------------------------
def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_problem(secret: str) -> str | None:
    """Why `secret` is not a Standard Webhooks secret, or None. The format is checked so that
    the libraries receivers verify with (which strip the prefix and base64-decode) accept it."""
    if not secret.startswith(SECRET_PREFIX):
        return f"must start with {SECRET_PREFIX!r} (Standard Webhooks format)"
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        return f"must be {SECRET_PREFIX!r} followed by base64"
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        return f"must encode {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes, not {len(key)}"
    return None


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` of `{id}.{timestamp}.{body}` keyed by the decoded secret."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
        "content-type": "application/json",
    }


# -- retries ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetrySchedule:
    """Exponential backoff with jitter: the wait after failed attempt n is about
    `base_s * 2**(n-1)`, at most `max_s`; the jitter (±25 %) keeps the deliveries of one
    outage from all coming back in the same second."""

    base_s: float
    max_s: float
    max_attempts: int

    def delay_after(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        exponent = min(max(attempt - 1, 0), 60)  # 2**60 s is past any max_s
        delay = min(self.max_s, self.base_s * 2**exponent)
        return min(self.max_s, delay * (0.75 + 0.5 * rand()))

    def gives_up_after(self, attempt: int) -> bool:
        return attempt >= self.max_attempts


# -- destinations ----------------------------------------------------------------------------------
def url_problem(url: str) -> str | None:
    """Why `url` cannot be an endpoint, or None: http(s) only, with a host and no credentials
    (a password in a URL would be shown in every listing)."""
    if len(url) > URL_MAX_LENGTH:
        return f"must be at most {URL_MAX_LENGTH} characters"
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "must not contain whitespace or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials (user:password@); authenticate with the signature"
    return None


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A globally routable unicast address: not loopback, private, link-local (cloud metadata
    at 169.254.169.254), shared (100.64/10), reserved, unspecified or multicast. An IPv4 address
    mapped into IPv6 is judged as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast
