"""Webhook endpoints, the outbox and the delivery log.

The outbox is what makes delivery safe: `announce_task` / `announce_alias` write a
`webhook_messages` row in the caller's transaction, the one that changes the task or the alias,
so a change that rolls back announces nothing and one that commits cannot lose its message. A
sender later fans each message out into one `webhook_deliveries` row per subscribed endpoint
(`dispatch_pending`) and claims due deliveries with a lease (`claim_due`). Both are
compare-and-sets, so any number of senders (the API's and every worker's) can run: a message is
fanned out once, and one attempt of a delivery is made by one sender.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from embtune.domain.aliases import AliasChange
from embtune.domain.tasks import Task
from embtune.domain.webhooks import (
    DeliveryStatus,
    DueDelivery,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    alias_event,
    envelope,
    task_events,
)
from embtune.storage.db import utcnow
from embtune.storage.ids import new_id
from embtune.storage.tables import WebhookDeliveryRow, WebhookEndpointRow, WebhookMessageRow

ENDPOINTS = WebhookEndpointRow.__table__
MESSAGES = WebhookMessageRow.__table__
DELIVERIES = WebhookDeliveryRow.__table__
# a delivery's last error is kept to this length: a receiver's error page can be long
ERROR_MAX_CHARS = 500


def _endpoint(row: Any) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id,
        url=row.url,
        events=tuple(WebhookEvent(e) for e in row.events),
        secret=row.secret,
        description=row.description,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        consecutive_failures=row.consecutive_failures,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id,
        endpoint_id=row.endpoint_id,
        message_id=row.message_id,
        event_type=row.event_type,
        payload=row.payload,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_attempt_at=row.last_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
        created_at=row.created_at,
    )


_DELIVERY_COLUMNS = (*DELIVERIES.c, MESSAGES.c.event_type, MESSAGES.c.payload)


# -- the outbox: called by the repositories whose changes are announced --------------------------
def announce_task(session: Session, task: Task) -> None:
    """Write the messages the task's new status announces (none for most statuses)."""
    for event, data in task_events(task):
        enqueue(session, event, data)


def announce_alias(session: Session, change: AliasChange) -> None:
    enqueue(session, *alias_event(change))


def enqueue(session: Session, event: WebhookEvent, data: dict[str, Any]) -> str | None:
    """Write one outbox message in the caller's transaction; its id, or None when no enabled
    endpoint subscribes to `event` (then nobody would receive it: a change made with no
    endpoint registered costs one read of a small table, not a write). Endpoints are few, so
    their subscriptions are matched here rather than with each database's JSON operators."""
    subscribed = session.scalars(
        select(WebhookEndpointRow.events).where(WebhookEndpointRow.enabled.is_(True))
    ).all()
    if not any(event.value in events for events in subscribed):
        return None
    now = utcnow()
    message_id = f"msg_{new_id()}"
    session.execute(
        insert(WebhookMessageRow).values(
            id=message_id,
            event_type=event.value,
            payload=envelope(event, data, now),
            created_at=now,
            dispatched_at=None,
        )
    )
    return message_id


class WebhookRepository:
    """Stateless; every method works inside the caller's transaction."""

    # -- endpoints -------------------------------------------------------------------------------
    def add_endpoint(
        self,
        session: Session,
        *,
        url: str,
        events: Sequence[WebhookEvent],
        secret: str,
        description: str | None,
    ) -> WebhookEndpoint:
        now = utcnow()
        values = {
            "id": new_id(),
            "url": url,
            "events": [e.value for e in events],
            "secret": secret,
            "description": description,
            "enabled": True,
            "disabled_reason": None,
            "consecutive_failures": 0,
            "created_at": now,
            "updated_at": now,
        }
        session.execute(insert(WebhookEndpointRow).values(**values))
        endpoint = self.get(session, values["id"])
        assert endpoint is not None
        return endpoint

    def get(self, session: Session, endpoint_id: str) -> WebhookEndpoint | None:
        row = session.execute(select(ENDPOINTS).where(ENDPOINTS.c.id == endpoint_id)).first()
        return _endpoint(row) if row else None

    def page(
        self, session: Session, *, offset: int, limit: int
    ) -> tuple[list[WebhookEndpoint], int]:
        """Oldest first (ids are time-ordered): endpoints are few and read like a list of
        subscriptions."""
        rows = session.execute(
            select(ENDPOINTS).order_by(ENDPOINTS.c.id).offset(offset).limit(limit)
        ).all()
        total = session.scalar(select(func.count()).select_from(ENDPOINTS)) or 0
        return [_endpoint(r) for r in rows], total

    def update_endpoint(
        self, session: Session, endpoint_id: str, values: dict[str, Any]
    ) -> WebhookEndpoint | None:
        """Change url, events, description or enabled. Enabling starts the failure count
        afresh: the operator says the receiver is back."""
        changes = dict(values)
        if "events" in changes:
            changes["events"] = [WebhookEvent(e).value for e in changes["events"]]
        if changes.get("enabled") is True:
            changes.update(consecutive_failures=0, disabled_reason=None)
        elif changes.get("enabled") is False:
            changes.setdefault("disabled_reason", "disabled through the API")
        result = session.execute(
            update(WebhookEndpointRow)
            .where(WebhookEndpointRow.id == endpoint_id)
            .values(**changes, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return self.get(session, endpoint_id) if result.rowcount == 1 else None

    def delete_endpoint(self, session: Session, endpoint_id: str) -> bool:
        """Its deliveries go with it (the foreign key cascades; SQLite enforces it with
        `PRAGMA foreign_keys`, deleted here as well so no engine setting is relied on)."""
        session.execute(delete(WebhookDeliveryRow).where(
            WebhookDeliveryRow.endpoint_id == endpoint_id))
        result = session.execute(
            delete(WebhookEndpointRow).where(WebhookEndpointRow.id == endpoint_id)
        )
        return result.rowcount == 1

    # -- fan-out ----------------------------------------------------------------------------------
    def has_undispatched(self, session: Session) -> bool:
        """A cheap read first, so an idle sender never opens a write transaction (on SQLite a
        write transaction takes the database's one write lock)."""
        found = session.scalar(
            select(MESSAGES.c.id).where(MESSAGES.c.dispatched_at.is_(None)).limit(1)
        )
        return found is not None

    def dispatch_pending(self, session: Session, now: datetime, limit: int) -> int:
        """Fan the oldest undispatched messages out into deliveries to the endpoints enabled
        and subscribed now; how many deliveries were created. Each message is marked with a
        compare-and-set (`dispatched_at IS NULL`), so two senders never fan one out twice."""
        pending = session.execute(
            select(MESSAGES.c.id, MESSAGES.c.event_type)
            .where(MESSAGES.c.dispatched_at.is_(None))
            .order_by(MESSAGES.c.created_at, MESSAGES.c.id)
            .limit(limit)
        ).all()
        if not pending:
            return 0
        endpoints = session.execute(
            select(ENDPOINTS.c.id, ENDPOINTS.c.events).where(ENDPOINTS.c.enabled.is_(True))
        ).all()
        created = 0
        for message_id, event_type in pending:
            marked = session.execute(
                update(WebhookMessageRow)
                .where(WebhookMessageRow.id == message_id,
                       WebhookMessageRow.dispatched_at.is_(None))
                .values(dispatched_at=now)
                .execution_options(synchronize_session=False)
            )
            if marked.rowcount != 1:
                continue  # another sender fanned it out
            rows = [
                self._new_delivery(endpoint_id, message_id, now)
                for endpoint_id, events in endpoints
                if event_type in events
            ]
            if rows:
                session.execute(insert(WebhookDeliveryRow), rows)
                created += len(rows)
        return created

    @staticmethod
    def _new_delivery(endpoint_id: str, message_id: str, now: datetime) -> dict[str, Any]:
        return {
            "id": new_id(),
            "endpoint_id": endpoint_id,
            "message_id": message_id,
            "status": DeliveryStatus.pending.value,
            "attempts": 0,
            "next_attempt_at": now,
            "claimed_until": None,
            "last_attempt_at": None,
            "last_status_code": None,
            "last_error": None,
            "delivered_at": None,
            "created_at": now,
        }

    # -- sending ----------------------------------------------------------------------------------
    def has_due(self, session: Session, now: datetime) -> bool:
        """The read before `claim_due`'s write transaction (see `has_undispatched`)."""
        found = session.scalar(
            select(DELIVERIES.c.id)
            .join(ENDPOINTS, ENDPOINTS.c.id == DELIVERIES.c.endpoint_id)
            .where(*self._due(now), ENDPOINTS.c.enabled.is_(True))
            .limit(1)
        )
        return found is not None

    def claim_due(
        self, session: Session, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[DueDelivery]:
        """Claim pending deliveries that are due, of enabled endpoints, for one attempt each:
        a compare-and-set on the lease (`claimed_until` unset or expired) that also counts the
        attempt. A sender that dies mid-attempt leaves a lease that expires; the delivery is
        then claimed again (at least once)."""
        due = session.scalars(
            select(DELIVERIES.c.id)
            .join(ENDPOINTS, ENDPOINTS.c.id == DELIVERIES.c.endpoint_id)
            .where(*self._due(now), ENDPOINTS.c.enabled.is_(True))
            .order_by(DELIVERIES.c.next_attempt_at, DELIVERIES.c.created_at)
            .limit(limit)
        ).all()
        claimed: list[str] = []
        for delivery_id in due:
            result = session.execute(
                update(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.id == delivery_id, *self._due(now))
                .values(claimed_until=lease_until, attempts=WebhookDeliveryRow.attempts + 1,
                        last_attempt_at=now)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:
                claimed.append(delivery_id)
        if not claimed:
            return []
        rows = session.execute(
            select(DELIVERIES.c.id, DELIVERIES.c.endpoint_id, DELIVERIES.c.message_id,
                   DELIVERIES.c.attempts, ENDPOINTS.c.url, ENDPOINTS.c.secret,
                   MESSAGES.c.payload)
            .join(ENDPOINTS, ENDPOINTS.c.id == DELIVERIES.c.endpoint_id)
            .join(MESSAGES, MESSAGES.c.id == DELIVERIES.c.message_id)
            .where(DELIVERIES.c.id.in_(claimed))
            .order_by(DELIVERIES.c.next_attempt_at, DELIVERIES.c.created_at)
        ).all()
        return [
            DueDelivery(id=r.id, endpoint_id=r.endpoint_id, url=r.url, secret=r.secret,
                        message_id=r.message_id, payload=r.payload, attempt=r.attempts)
            for r in rows
        ]

    @staticmethod
    def _due(now: datetime) -> tuple[Any, ...]:
        return (
            DELIVERIES.c.status == DeliveryStatus.pending.value,
            DELIVERIES.c.next_attempt_at <= now,
            or_(DELIVERIES.c.claimed_until.is_(None), DELIVERIES.c.claimed_until < now),
        )

    def record_attempt(
        self,
        session: Session,
        due: DueDelivery,
        *,
        now: datetime,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        retry_at: datetime | None,
        disable_after: int,
    ) -> bool:
        """Write one attempt's outcome: delivered, pending again at `retry_at`, or failed for
        good (`retry_at` None). Guarded by the attempt number: a sender whose lease expired
        and whose delivery was claimed again records nothing. A success resets the endpoint's
        failure count; a failure adds one, and the `disable_after`-th in a row disables it.
        True when this attempt disabled the endpoint."""
        if delivered:
            status, next_at = DeliveryStatus.delivered, None
        elif retry_at is None:
            status, next_at = DeliveryStatus.failed, None
        else:
            status, next_at = DeliveryStatus.pending, retry_at
        result = session.execute(
            update(WebhookDeliveryRow)
            .where(
                WebhookDeliveryRow.id == due.id,
                WebhookDeliveryRow.attempts == due.attempt,
                WebhookDeliveryRow.status == DeliveryStatus.pending.value,
            )
            .values(
                status=status.value,
                next_attempt_at=next_at,
                claimed_until=None,
                last_status_code=status_code,
                last_error=error[:ERROR_MAX_CHARS] if error else None,
                delivered_at=now if delivered else None,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return False
        endpoint = WebhookEndpointRow
        if delivered:
            session.execute(
                update(endpoint)
                .where(endpoint.id == due.endpoint_id, endpoint.consecutive_failures > 0)
                .values(consecutive_failures=0)
                .execution_options(synchronize_session=False)
            )
            return False
        session.execute(
            update(endpoint).where(endpoint.id == due.endpoint_id)
            .values(consecutive_failures=endpoint.consecutive_failures + 1)
            .execution_options(synchronize_session=False)
        )
        disabled = session.execute(
            update(endpoint)
            .where(endpoint.id == due.endpoint_id, endpoint.enabled.is_(True),
                   endpoint.consecutive_failures >= disable_after)
            .values(enabled=False, updated_at=now, disabled_reason=(
                f"disabled after {disable_after} failed delivery attempts in a row"))
            .execution_options(synchronize_session=False)
        )
        return disabled.rowcount == 1

    def release(self, session: Session, claimed: Sequence[DueDelivery]) -> None:
        """Hand back claimed deliveries that were not attempted (the sender is stopping, or
        their endpoint was just disabled): due again at once, the attempt not counted."""
        for due in claimed:
            session.execute(
                update(WebhookDeliveryRow)
                .where(
                    WebhookDeliveryRow.id == due.id,
                    WebhookDeliveryRow.attempts == due.attempt,
                    WebhookDeliveryRow.status == DeliveryStatus.pending.value,
                )
                .values(claimed_until=None, attempts=WebhookDeliveryRow.attempts - 1)
                .execution_options(synchronize_session=False)
            )

    # -- the delivery log -------------------------------------------------------------------------
    def deliveries_of(
        self,
        session: Session,
        endpoint_id: str,
        *,
        offset: int,
        limit: int,
        status: DeliveryStatus | None = None,
    ) -> tuple[list[WebhookDelivery], int]:
        """Newest first, the id breaking ties, so offsets are stable between pages."""
        where = [DELIVERIES.c.endpoint_id == endpoint_id]
        if status is not None:
            where.append(DELIVERIES.c.status == status.value)
        rows = session.execute(
            select(*_DELIVERY_COLUMNS)
            .join(MESSAGES, MESSAGES.c.id == DELIVERIES.c.message_id)
            .where(*where)
            .order_by(DELIVERIES.c.created_at.desc(), DELIVERIES.c.id.desc())
            .offset(offset)
            .limit(limit)
        ).all()
        total = session.scalar(select(func.count()).select_from(DELIVERIES).where(*where)) or 0
        return [_delivery(r) for r in rows], total

    def get_delivery(
        self, session: Session, endpoint_id: str, delivery_id: str
    ) -> WebhookDelivery | None:
        row = session.execute(
            select(*_DELIVERY_COLUMNS)
            .join(MESSAGES, MESSAGES.c.id == DELIVERIES.c.message_id)
            .where(DELIVERIES.c.id == delivery_id, DELIVERIES.c.endpoint_id == endpoint_id)
        ).first()
        return _delivery(row) if row else None

    # -- retention ------------------------------------------------------------------------------
    def prune(self, session: Session, cutoff: datetime, limit: int) -> int:
        """Delete up to `limit` messages created before `cutoff` that were fanned out and have
        no delivery still pending, with their deliveries; how many messages went. A message a
        receiver may still get (pending, or waiting for a disabled endpoint) is kept whatever
        its age; redelivering a pruned one is no longer possible."""
        pending = (
            select(DELIVERIES.c.id)
            .where(DELIVERIES.c.message_id == MESSAGES.c.id,
                   DELIVERIES.c.status == DeliveryStatus.pending.value)
            .exists()
        )
        doomed = session.scalars(
            select(MESSAGES.c.id)
            .where(MESSAGES.c.created_at < cutoff, MESSAGES.c.dispatched_at.is_not(None),
                   ~pending)
            .order_by(MESSAGES.c.created_at)
            .limit(limit)
        ).all()
        if not doomed:
            return 0
        session.execute(delete(WebhookDeliveryRow).where(
            WebhookDeliveryRow.message_id.in_(doomed)))
        result = session.execute(
            delete(WebhookMessageRow).where(WebhookMessageRow.id.in_(doomed))
        )
        return result.rowcount

    def redeliver(self, session: Session, endpoint_id: str, delivery_id: str) -> str | None:
        """A new delivery of the same message to the same endpoint, due now; its id (None: no
        such delivery). The message id, and so `webhook-id`, is the same: a receiver that
        de-duplicates sees the redelivery as the message it already has."""
        message_id = session.scalar(
            select(DELIVERIES.c.message_id)
            .where(DELIVERIES.c.id == delivery_id, DELIVERIES.c.endpoint_id == endpoint_id)
        )
        if message_id is None:
            return None
        values = self._new_delivery(endpoint_id, message_id, utcnow())
        session.execute(insert(WebhookDeliveryRow).values(**values))
        return values["id"]

