"""`can_cancel` / `can_restart` on a task say what `PUT …/cancel` and `PUT …/restart` would do,
in every status, so the dashboard and the CLI need no status lists of their own."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import task_status, wait_status

TASKS = "/api/v1/fine-tuning/task"
LONG = {"steps": 10_000, "step_seconds": 0.01}
# status → (can_cancel, can_restart): processing is never restarted (the live run is answered
# unchanged), done never (it keeps its result), canceled is not canceled again (unchanged).
EXPECTED = {
    "pending": (True, True),
    "processing": (True, False),
    "done": (False, False),
    "failed": (False, True),
    "refused": (False, True),
    "canceled": (False, True),
}


def create(client: TestClient, model_id: str, **params: Any) -> str:
    response = client.post(TASKS, json={"embedding_model_id": model_id, "params": params})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def act(client: TestClient, task_id: str, action: str) -> dict[str, Any]:
    """The task after the action; a refusal (409) leaves it as it was."""
    response = client.put(f"{TASKS}/{task_id}/{action}")
    assert response.status_code in (200, 409), response.text
    return task_status(client, task_id)


def test_flags_match_what_cancel_and_restart_do_in_every_status(
    client: TestClient, model_id: str
) -> None:
    tasks = {
        "done": wait_status(client, create(client, model_id), "done"),
        "failed": wait_status(client, create(client, model_id, fail=True), "failed"),
        "refused": wait_status(client, create(client, model_id, refuse=True), "refused"),
        "processing": wait_status(client, create(client, model_id, **LONG), "processing"),
    }
    tasks["pending"] = task_status(client, create(client, model_id))  # queued behind the run
    assert tasks["pending"]["status"] == "pending"
    canceled_id = create(client, model_id)
    client.put(f"{TASKS}/{canceled_id}/cancel")
    tasks["canceled"] = task_status(client, canceled_id)

    for status, task in tasks.items():
        assert task["status"] == status
        assert (task["can_cancel"], task["can_restart"]) == EXPECTED[status], status

    # what the flags promise: restart queues the task again (a new message), cancel cancels it
    for status, task in tasks.items():
        after = act(client, task["id"], "restart")
        if task["can_restart"]:
            assert after["status"] == "pending", status
            assert after["message_id"] != task["message_id"], status
        else:
            assert after["status"] == status and after["message_id"] == task["message_id"], status
    for status, task in tasks.items():
        before = task_status(client, task["id"])
        after = act(client, task["id"], "cancel")
        if before["can_cancel"]:
            assert after["status"] == "canceled", status
        else:
            assert after["status"] == before["status"], status
        assert (after["can_cancel"], after["can_restart"]) == EXPECTED[after["status"]]
