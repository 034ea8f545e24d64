"""A re-queued task shows that it waits for a worker, not the dead run's last progress."""

from __future__ import annotations

from datetime import timedelta

from embtune.storage.db import utcnow
from tests.conftest import register_model, task_status, wait_status

TASKS = "/api/v1/fine-tuning/task"
LIVE_PROGRESS = {"fraction": 0.5, "step": 5, "total_steps": 10, "message": "training",
                 "eta_s": 12.0, "loss": 0.3}


def test_recovery_requeue_resets_the_dead_runs_progress(client_factory) -> None:
    client = client_factory(run_worker=False, heartbeat_timeout_s=0.5)
    runtime = client.app.state.runtime
    task = client.post(TASKS, json={"embedding_model_id": register_model(client)}).json()
    assert runtime.runner._claim(task["id"], task["message_id"]) is not None
    with runtime.db.transaction() as session:  # a run that reported...
        assert runtime.runner.tasks.update_live(session, task["id"], task["message_id"], {
            "progress": LIVE_PROGRESS, "heartbeat_at": utcnow() + timedelta(hours=1)})
    assert task_status(client, task["id"])["progress"]["step"] == 5
    with runtime.db.transaction() as session:  # ...then went silent
        assert runtime.runner.tasks.update_live(session, task["id"], task["message_id"], {
            "heartbeat_at": utcnow() - timedelta(seconds=30)})

    runtime.recovery.run_once()  # (the periodic pass may get there first: the same outcome)
    requeued = wait_status(client, task["id"], "pending")
    assert requeued["message_id"] != task["message_id"]
    assert requeued["progress"] == {"fraction": 0.0, "step": 0, "total_steps": 0,
                                    "message": "worker stopped heart-beating; re-queued"}


def test_shutdown_hand_back_resets_the_runs_progress(client_factory) -> None:
    client = client_factory(run_worker=False)  # the run happens here, on the test's thread
    runtime = client.app.state.runtime
    body = {"embedding_model_id": register_model(client),
            "params": {"steps": 3, "step_seconds": 0.15, "shutdown": True}}
    task = client.post(TASKS, json=body).json()
    runtime.runner.handle(task["id"], task["message_id"])
    handed_back = task_status(client, task["id"])
    assert handed_back["status"] == "pending" and handed_back["attempts"] == 1
    assert handed_back["message_id"] != task["message_id"]
    assert handed_back["progress"] == {"fraction": 0.0, "step": 0, "total_steps": 0,
                                       "message": "worker shut down during the run; re-queued"}
