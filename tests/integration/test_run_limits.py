"""The ways a run is ended from outside, end to end: the hard interrupt of a canceled run that
ignores the stop, the time limit, and giving up after `EMBTUNE_MAX_ATTEMPTS` runs."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from tests.conftest import claims, events, register_model, task_status, wait_status, wait_until

TASKS = "/api/v1/fine-tuning/task"
ENDLESS = {"steps": 100_000, "step_seconds": 0.01}


def create(client: TestClient, model_id: str, **params: object) -> dict:
    response = client.post(TASKS, json={"embedding_model_id": model_id, "params": params})
    assert response.status_code == 201, response.text
    return response.json()


def models_of(client: TestClient, task_id: str) -> list[str]:
    listed = client.get("/api/v1/embedding-models", params={"limit": 100}).json()
    return [m["id"] for m in listed if m["task_id"] == task_id]


def test_a_canceled_run_that_ignores_the_stop_is_interrupted_after_the_grace(
    client_factory,
) -> None:
    client = client_factory(abort_grace_s=1.0, worker_threads=1)
    model_id = register_model(client)
    stubborn = create(client, model_id, **ENDLESS, ignore_cancel=True)
    wait_until(lambda: task_status(client, stubborn["id"])["progress"]["step"] > 0)
    waiting = create(client, model_id)  # the one worker thread is busy with the stubborn run
    canceled_at = time.monotonic()
    assert client.put(f"{TASKS}/{stubborn['id']}/cancel").json()["status"] == "canceled"
    time.sleep(0.5)
    assert task_status(client, waiting["id"])["status"] == "pending"  # still running on

    done = wait_status(client, waiting["id"], "done", timeout=30)  # the thread was freed
    assert time.monotonic() - canceled_at >= 1.0  # not before the grace
    final = task_status(client, stubborn["id"])
    assert final["status"] == "canceled" and final["result_model_id"] is None
    assert final["detail"] == "canceled on request"
    assert models_of(client, stubborn["id"]) == []
    assert claims(client, stubborn["id"]) == 1 and done["attempts"] == 1
    staging = client.app.state.runtime.artifacts.root / ".staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_a_run_past_the_time_limit_ends_failed_and_frees_the_worker(client_factory) -> None:
    client = client_factory(task_time_limit_s=1.0, worker_threads=1)
    model_id = register_model(client)
    slow = create(client, model_id, **ENDLESS)
    failed = wait_status(client, slow["id"], "failed", timeout=20)
    assert failed["detail"] == "time limit exceeded"
    assert failed["attempts"] == 1 and failed["result_model_id"] is None
    transitions = [e["to_status"] for e in events(client, slow["id"]) if e["kind"] == "transition"]
    assert transitions == ["pending", "processing", "failed"]
    assert models_of(client, slow["id"]) == []
    assert wait_status(client, create(client, model_id)["id"], "done")["attempts"] == 1


def test_a_task_whose_runs_keep_dying_fails_after_max_attempts(client_factory) -> None:
    """Each run's worker goes silent (its heart-beats stop, as when its process is frozen or
    cut off); recovery re-queues the task until it has been claimed `max_attempts` times."""
    client = client_factory(run_worker=False, max_attempts=2, heartbeat_timeout_s=0.6,
                            recovery_interval_s=0.2, undelivered_after_s=0.2)
    runtime = client.app.state.runtime
    task = create(client, register_model(client), **ENDLESS)

    def claim_and_go_silent() -> bool:
        current = task_status(client, task["id"])
        if current["status"] != "pending":
            return current["status"] == "failed"
        runtime.runner._claim(task["id"], current["message_id"])  # a run that never beats
        return False

    failed = wait_until(claim_and_go_silent, timeout=30, interval=0.05)
    final = task_status(client, task["id"])
    assert failed and final["status"] == "failed"
    assert final["attempts"] == 2 and claims(client, task["id"]) == 2
    assert "2 attempt" in final["detail"]
    transitions = [e["to_status"] for e in events(client, task["id"]) if e["kind"] == "transition"]
    assert transitions == ["pending", "processing", "pending", "processing", "failed"]
