"""A run's monitor thread survives a stray asynchronous interrupt and keeps heart-beating."""

from __future__ import annotations

import threading
from datetime import datetime

from dramatiq.middleware import Shutdown
from dramatiq.middleware.threading import raise_thread_exception

from tests.conftest import register_model, task_status, wait_status, wait_until

TASKS = "/api/v1/fine-tuning/task"


def test_a_stray_shutdown_in_the_monitor_does_not_stop_its_heartbeats(client_factory) -> None:
    # dramatiq raises Shutdown into threads by id; a reused id can put one into the monitor
    client = client_factory()
    model = register_model(client)
    task = client.post(TASKS, json={"embedding_model_id": model,
                                    "params": {"steps": 40, "step_seconds": 0.1}}).json()
    wait_status(client, task["id"], "processing")
    name = f"embtune-monitor-{task['id']}"
    monitor = wait_until(lambda: next((t for t in threading.enumerate() if t.name == name), None))
    raise_thread_exception(monitor.ident, Shutdown)
    seen = datetime.fromisoformat(task_status(client, task["id"])["heartbeat_at"])
    wait_until(lambda: datetime.fromisoformat(task_status(client, task["id"])["heartbeat_at"])
               > seen, timeout=5)
    assert monitor.is_alive()
    done = wait_status(client, task["id"], "done", timeout=30)
    assert done["attempts"] == 1
