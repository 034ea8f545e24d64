"""A task's training checkpoints: deleted when the task is done, failed, refused or canceled,
kept when its run is handed back (it resumes from them), swept by recovery for a task that ends
without running again; checkpoint params out of range are refused with nothing stored."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from embtune.domain.retry import RetryPolicy
from embtune.services.recovery import Recovery
from embtune.training.checkpoints import mark_complete
from tests.conftest import events, register_model, task_status, wait_status, wait_until

TASKS = "/api/v1/fine-tuning/task"


def left_by_an_earlier_run(checkpoints: Path) -> Path:
    """A complete checkpoint, as an interrupted run of the task leaves it."""
    path = checkpoints / "checkpoint-4"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"\0" * 64)
    mark_complete(path, 4)
    return path


def _create(client: TestClient, model_id: str, **params: Any) -> dict[str, Any]:
    response = client.post(TASKS, json={"embedding_model_id": model_id, "params": params})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize(
    ("params", "status"),
    [({"steps": 1}, "done"), ({"steps": 1, "fail": True}, "failed"),
     ({"refuse": True}, "refused")],
)
def test_a_run_that_ends_the_task_deletes_its_checkpoints(
    client_factory: Callable[..., TestClient], params: dict[str, Any], status: str
) -> None:
    client = client_factory(run_worker=False)
    runtime = client.app.state.runtime
    task = _create(client, register_model(client), **params)
    checkpoints = runtime.artifacts.checkpoint_dir(task["id"])
    left_by_an_earlier_run(checkpoints)
    runtime.runner.handle(task["id"], task["message_id"])
    assert task_status(client, task["id"])["status"] == status
    assert not checkpoints.exists()


def test_a_run_handed_back_keeps_its_checkpoints_for_the_next(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(run_worker=False)
    runtime = client.app.state.runtime
    task = _create(client, register_model(client), steps=1, shutdown=True)
    checkpoints = runtime.artifacts.checkpoint_dir(task["id"])
    kept = left_by_an_earlier_run(checkpoints)
    runtime.runner.handle(task["id"], task["message_id"])
    assert task_status(client, task["id"])["status"] == "pending"
    assert (kept / "model.safetensors").exists()


def test_a_run_stopped_by_a_cancel_deletes_its_checkpoints(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(run_worker=False)
    runtime = client.app.state.runtime
    task = _create(client, register_model(client), steps=2000, step_seconds=0.01)
    checkpoints = runtime.artifacts.checkpoint_dir(task["id"])
    left_by_an_earlier_run(checkpoints)
    run = threading.Thread(target=runtime.runner.handle, args=(task["id"], task["message_id"]))
    run.start()
    try:
        wait_until(lambda: task_status(client, task["id"])["progress"]["step"] > 0, 30)
        assert client.put(f"{TASKS}/{task['id']}/cancel").status_code == 200
    finally:
        run.join(timeout=60)
    assert not run.is_alive()
    assert any(e["message"].startswith("run stop") for e in events(client, task["id"]))
    assert not checkpoints.exists()


def test_recovery_sweeps_the_checkpoints_of_a_task_canceled_before_it_ran_again(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(run_worker=False)
    runtime = client.app.state.runtime
    model_id = register_model(client)
    canceled, waiting = _create(client, model_id), _create(client, model_id)
    for task in (canceled, waiting):
        left_by_an_earlier_run(runtime.artifacts.checkpoint_dir(task["id"]))
    assert client.put(f"{TASKS}/{canceled['id']}/cancel").status_code == 200
    wait_status(client, canceled["id"], "canceled")
    recovery = Recovery(runtime.db, runtime.tasks, RetryPolicy(3), heartbeat_timeout_s=60.0,
                        undelivered_after_s=60.0, redeliver_after_s=900.0,
                        artifacts=runtime.artifacts, staging_grace_s=0.0)
    assert recovery.run_once().checkpoints_swept == 1
    assert not runtime.artifacts.checkpoint_dir(canceled["id"]).exists()
    assert runtime.artifacts.checkpoint_dir(waiting["id"]).exists()  # pending: may resume


@pytest.mark.parametrize(
    ("field", "value"),
    [("checkpoint_every_steps", 0), ("checkpoint_every_steps", 1.5),
     ("checkpoint_every_s", 5), ("checkpoint_every_s", "often")],
)
def test_checkpoint_params_out_of_range_are_422_naming_the_field_with_nothing_stored(
    client_factory: Callable[..., TestClient], field: str, value: Any
) -> None:
    client = client_factory(run_worker=False)
    model_id = register_model(client, plugin="sentence-transformers-mnrl")
    response = client.post(TASKS, json={"embedding_model_id": model_id,
                                        "params": {field: value}})
    assert response.status_code == 422
    assert ("body", "params", field) in [tuple(e["loc"]) for e in response.json()["detail"]]
    assert client.get(TASKS).headers["X-Total-Count"] == "0"  # nothing stored
