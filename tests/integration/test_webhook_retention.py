"""The webhook log does not grow for ever: messages older than `webhook_log_retention_days`
that no delivery still waits for are deleted with their deliveries, on every backend; a message
an endpoint may still receive is kept whatever its age."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from embtune.runtime import Runtime
from embtune.services.webhook_sender import WebhookSender
from embtune.storage.db import utcnow
from embtune.storage.tables import WebhookDeliveryRow, WebhookMessageRow
from tests.conftest import register_model
from tests.support.webhook_receiver import WebhookReceiver

HOOKS = "/api/v1/webhooks"
FAST = {"webhook_allow_private_urls": True, "webhook_backoff_s": 60.0, "webhook_timeout_s": 2.0}
CLOSED_PORT_URL = "http://127.0.0.1:9/hook"  # the discard port: nothing listens on loopback


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.stop()


def _messages(runtime: Runtime) -> dict[str, str]:
    """message id → event type, for what the outbox holds now."""
    with runtime.db.read() as session:
        rows = session.execute(select(WebhookMessageRow.id, WebhookMessageRow.event_type))
        return {message_id: event for message_id, event in rows}


def _age(runtime: Runtime, message_ids: set[str], days: float) -> None:
    with runtime.db.transaction() as session:
        session.execute(
            update(WebhookMessageRow)
            .where(WebhookMessageRow.id.in_(message_ids))
            .values(created_at=utcnow() - timedelta(days=days))
        )


def test_old_finished_messages_are_pruned_and_pending_or_recent_ones_kept(
    client_factory: Callable[..., TestClient], receiver: WebhookReceiver
) -> None:
    client = client_factory(run_worker=False, **FAST)
    runtime: Runtime = client.app.state.runtime
    receiver.start()
    up = client.post(HOOKS, json={"url": receiver.url, "events": ["alias.updated"]}).json()
    model_id = register_model(client)
    for n in range(3):
        assert client.put(f"/api/v1/aliases/old{n}", json={"model_id": model_id}).is_success
    sender = WebhookSender(runtime.db, runtime.settings)
    try:
        assert sender.run_once().delivered == 3
        old_delivered = set(_messages(runtime))
        # a message a receiver still waits for: its second endpoint is down (retry in 60 s)
        assert client.post(HOOKS, json={"url": CLOSED_PORT_URL,
                                        "events": ["alias.updated"]}).status_code == 201
        assert client.put("/api/v1/aliases/waiting", json={"model_id": model_id}).is_success
        report = sender.run_once()
        assert (report.delivered, report.failed_attempts) == (1, 1)
        waiting = set(_messages(runtime)) - old_delivered
        _age(runtime, old_delivered | waiting, days=40)
        # a recent one, delivered to the receiver and failed at the closed port for good
        assert client.put("/api/v1/aliases/recent", json={"model_id": model_id}).is_success
        sender.run_once()
        recent = set(_messages(runtime)) - old_delivered - waiting

        # with retention off, nothing goes
        runtime.settings.webhook_log_retention_days = 0
        keeping = WebhookSender(runtime.db, runtime.settings)
        try:
            assert keeping.run_once().pruned == 0
        finally:
            keeping.close()
        assert set(_messages(runtime)) == old_delivered | waiting | recent

        sender._pruned_at = None  # the hourly pass is due again
        assert sender.run_once().pruned == 3
    finally:
        sender.close()
    assert set(_messages(runtime)) == waiting | recent
    with runtime.db.read() as session:
        left = set(session.scalars(select(WebhookDeliveryRow.message_id)))
    assert left == waiting | recent  # the pruned messages' deliveries went with them
    log = client.get(f"{HOOKS}/{up['id']}/deliveries", params={"limit": 100}).json()
    assert len(log) == 2
