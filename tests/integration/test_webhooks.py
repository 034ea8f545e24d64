"""Signed webhooks on every backend, with a real HTTP receiver on 127.0.0.1: task and alias
events arrive signed, retries survive a receiver that is down, an endpoint that keeps failing is
disabled, a message outlives an API restart, and a rolled-back change announces nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from embtune.api.app import create_app
from embtune.domain.tasks import Transition
from embtune.runtime import Runtime
from embtune.services.webhook_sender import SendReport, WebhookSender
from embtune.storage.tables import WebhookMessageRow
from embtune.storage.tasks_repo import TaskRepository
from tests.conftest import make_settings, register_model, wait_status, wait_until
from tests.support.backends import Backend
from tests.support.webhook_receiver import WebhookReceiver, of_type, verify

HOOKS = "/api/v1/webhooks"
TASKS = "/api/v1/fine-tuning/task"
# fast polling and retries, receivers on 127.0.0.1
FAST = {
    "webhook_allow_private_urls": True,
    "webhook_poll_interval_s": 0.1,
    "webhook_backoff_s": 0.2,
    "webhook_backoff_max_s": 0.5,
    "webhook_timeout_s": 2.0,
}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.stop()


def register(client: TestClient, url: str, events: list[str], **extra: Any) -> dict[str, Any]:
    response = client.post(HOOKS, json={"url": url, "events": events, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def deliveries(client: TestClient, endpoint_id: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"{HOOKS}/{endpoint_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def message_count(runtime: Runtime) -> int:
    with runtime.db.read() as session:
        return session.scalar(select(func.count()).select_from(WebhookMessageRow)) or 0


def test_a_task_sends_signed_processing_and_done_and_a_redelivery_keeps_its_id(
    client_factory: Callable[..., TestClient], receiver: WebhookReceiver
) -> None:
    client = client_factory(**FAST)
    receiver.start()
    endpoint = register(client, receiver.url, ["task.processing", "task.done"])
    model_id = register_model(client)
    task = client.post(TASKS, json={"embedding_model_id": model_id,
                                    "params": {"verdict": "better"}}).json()
    done = wait_status(client, task["id"], "done")

    processing = receiver.wait_for(of_type("task.processing", id=task["id"]))[0]
    finished = receiver.wait_for(of_type("task.done", id=task["id"]))[0]
    for request in (processing, finished):
        assert verify(endpoint["secret"], request.headers, request.body)
        assert not verify(endpoint["secret"], request.headers, request.body + b" ")
        assert request.id.startswith("msg_")
    assert processing.id != finished.id
    assert finished.json["data"] == {
        "id": task["id"], "kind": "fine_tuning", "status": "done",
        "embedding_model_id": model_id, "result_model_id": done["result_model_id"],
        "detail": None, "attempts": 1, "verdict": "better",
    }
    assert finished.json["timestamp"]

    done_delivery = wait_until(lambda: next(
        (d for d in deliveries(client, endpoint["id"], status="delivered")
         if d["message_id"] == finished.id), None))
    assert done_delivery["attempts"] == 1 and done_delivery["last_status_code"] == 204
    assert done_delivery["payload"] == finished.json

    again = client.post(f"{HOOKS}/{endpoint['id']}/deliveries/{done_delivery['id']}/redeliver")
    assert again.status_code == 202, again.text
    assert again.json()["message_id"] == finished.id and again.json()["id"] != done_delivery["id"]
    repeats = receiver.wait_for(lambda r: r.id == finished.id, count=2)
    assert repeats[1].body == finished.body
    assert verify(endpoint["secret"], repeats[1].headers, repeats[1].body)


def test_deliveries_are_retried_until_the_receiver_comes_up(
    client_factory: Callable[..., TestClient], receiver: WebhookReceiver
) -> None:
    client = client_factory(**FAST)  # the receiver is not listening yet: connections refused
    endpoint = register(client, receiver.url, ["task.done"])
    task = client.post(TASKS, json={"embedding_model_id": register_model(client)}).json()
    wait_status(client, task["id"], "done")

    def retried() -> dict[str, Any] | None:
        log = deliveries(client, endpoint["id"])
        return log[0] if log and log[0]["attempts"] >= 2 else None

    failing = wait_until(retried)
    assert failing["status"] == "pending" and failing["last_error"]
    assert failing["last_status_code"] is None and failing["next_attempt_at"]
    receiver.start()
    request = receiver.wait_for(of_type("task.done", id=task["id"]))[0]
    assert verify(endpoint["secret"], request.headers, request.body)
    delivered = wait_until(lambda: deliveries(client, endpoint["id"], status="delivered"))
    assert delivered[0]["attempts"] >= 2 and delivered[0]["id"] == failing["id"]
    assert client.get(f"{HOOKS}/{endpoint['id']}").json()["consecutive_failures"] == 0


def test_an_endpoint_that_keeps_failing_is_disabled_and_resumes_when_enabled(
    client_factory: Callable[..., TestClient], receiver: WebhookReceiver
) -> None:
    client = client_factory(**FAST, webhook_disable_after_failures=3)
    endpoint = register(client, receiver.url, ["task.processing", "task.done"])
    task = client.post(TASKS, json={"embedding_model_id": register_model(client)}).json()
    wait_status(client, task["id"], "done")

    def disabled() -> dict[str, Any] | None:
        found = client.get(f"{HOOKS}/{endpoint['id']}").json()
        return found if not found["enabled"] else None

    found = wait_until(disabled)
    assert found["consecutive_failures"] == 3
    assert "3 failed delivery attempts" in found["disabled_reason"]
    log = deliveries(client, endpoint["id"])
    assert sum(d["attempts"] for d in log) == 3 and all(d["status"] == "pending" for d in log)
    refused = client.post(f"{HOOKS}/{endpoint['id']}/deliveries/{log[0]['id']}/redeliver")
    assert refused.status_code == 409 and "disabled" in refused.json()["detail"]

    receiver.start()
    enabled = client.patch(f"{HOOKS}/{endpoint['id']}", json={"enabled": True}).json()
    assert enabled["enabled"] and enabled["consecutive_failures"] == 0
    assert enabled["disabled_reason"] is None
    receiver.wait_for(of_type("task.done", id=task["id"]))
    receiver.wait_for(of_type("task.processing", id=task["id"]))


def test_a_message_written_before_a_restart_is_sent_by_the_next_process(
    backend: Backend, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """The API changes an alias with no sender running (no worker), stops, and a new process
    over the same database delivers the message: the outbox, not memory, holds it."""
    settings = make_settings(backend, tmp_path / "data", **FAST)
    receiver.start()
    with TestClient(create_app(settings, run_worker=False)) as first:
        endpoint = register(first, receiver.url, ["alias.updated"])
        model_id = register_model(first)
        moved = first.put("/api/v1/aliases/production", json={"model_id": model_id})
        assert moved.status_code == 200, moved.text
        assert message_count(first.app.state.runtime) == 1
    assert receiver.requests() == []

    with TestClient(create_app(settings, run_worker=True)) as second:
        request = receiver.wait_for(of_type("alias.updated"))[0]
        assert verify(endpoint["secret"], request.headers, request.body)
        assert request.json["data"] == {
            "name": "production", "model_id": model_id, "previous": None, "version": 1,
            "action": "set", "changed_by": "api", "reason": "",
        }
        wait_until(lambda: deliveries(second, endpoint["id"], status="delivered"))


def test_a_rolled_back_transition_writes_no_message(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(run_worker=False, webhook_allow_private_urls=True)
    runtime: Runtime = client.app.state.runtime
    register(client, "http://127.0.0.1:9/hooks", ["task.canceled"])
    task = client.post(TASKS, json={"embedding_model_id": register_model(client)}).json()
    repo = TaskRepository()

    with (
        pytest.raises(RuntimeError, match="after the transition"),
        runtime.db.transaction() as session,
    ):
        assert repo.apply(session, task["id"], Transition.cancel) is not None
        raise RuntimeError("failed after the transition")
    assert message_count(runtime) == 0
    assert client.get(f"{TASKS}/{task['id']}").json()["status"] == "pending"

    with runtime.db.transaction() as session:  # the same change, committed: one message
        assert repo.apply(session, task["id"], Transition.cancel) is not None
    assert message_count(runtime) == 1


def test_no_message_is_written_for_an_event_nobody_subscribes_to(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(run_worker=False, webhook_allow_private_urls=True)
    runtime: Runtime = client.app.state.runtime
    endpoint = register(client, "http://127.0.0.1:9/hooks", ["alias.updated"])
    client.patch(f"{HOOKS}/{endpoint['id']}", json={"events": ["task.done"]})
    model_id = register_model(client)
    assert client.put("/api/v1/aliases/live", json={"model_id": model_id}).status_code == 200
    assert message_count(runtime) == 0


def test_two_senders_over_one_database_send_each_message_once(
    client_factory: Callable[..., TestClient], receiver: WebhookReceiver
) -> None:
    """The fan-out and the claims are compare-and-sets: senders of two processes (here two
    threads with senders of their own) racing over the same outbox send every message once."""
    client = client_factory(run_worker=False, **FAST)
    runtime: Runtime = client.app.state.runtime
    receiver.start()
    endpoint = register(client, receiver.url, ["alias.updated"])
    model_id = register_model(client)
    for n in range(12):
        assert client.put(f"/api/v1/aliases/a{n}", json={"model_id": model_id}).status_code == 200
    senders = [WebhookSender(runtime.db, runtime.settings) for _ in range(2)]
    start = threading.Barrier(len(senders))

    def run(sender: WebhookSender) -> SendReport:
        start.wait()
        return sender.run_once()

    try:
        with ThreadPoolExecutor(max_workers=len(senders)) as pool:
            reports = list(pool.map(run, senders))
    finally:
        for sender in senders:
            sender.close()
    assert sum(r.fanned_out for r in reports) == 12
    assert sum(r.delivered for r in reports) == 12
    ids = [r.id for r in receiver.requests()]
    assert len(ids) == 12 and len(set(ids)) == 12
    log = deliveries(client, endpoint["id"], limit=100)
    assert [d["attempts"] for d in log] == [1] * 12
