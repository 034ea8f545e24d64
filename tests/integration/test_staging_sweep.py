"""Recovery sweeps the staging directories of runs that are over (a killed worker's or server's
run never cleans up after itself), and never one that a live run is writing."""

from __future__ import annotations

import os
import time
from pathlib import Path

from embtune.domain.retry import RetryPolicy
from embtune.services.recovery import Recovery
from embtune.storage.ids import new_id
from tests.conftest import register_model, wait_status

TASKS = "/api/v1/fine-tuning/task"
HOUR_AGO = time.time() - 3600


def leftover(staging: Path, task_id: str, run_id: str, *, old: bool = True) -> Path:
    """A run's staging directory with a half-written model in it, as a killed run leaves it."""
    path = staging / f"{task_id}-{run_id}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"\0" * 64)
    if old:
        os.utime(path, (HOUR_AGO, HOUR_AGO))
    return path


def recovery(runtime, grace_s: float) -> Recovery:
    return Recovery(runtime.db, runtime.tasks, RetryPolicy(3), heartbeat_timeout_s=60.0,
                    undelivered_after_s=60.0, redeliver_after_s=900.0,
                    artifacts=runtime.artifacts, staging_grace_s=grace_s)


def test_recovery_sweeps_staging_of_finished_and_requeued_runs_only(client_factory) -> None:
    client = client_factory(run_worker=False)
    runtime = client.app.state.runtime
    staging = runtime.artifacts.root / ".staging"
    model_id = register_model(client)

    def create(**params: object) -> dict:
        return client.post(TASKS, json={"embedding_model_id": model_id, "params": params}).json()

    done = create(steps=1)
    runtime.runner.handle(done["id"], done["message_id"])
    wait_status(client, done["id"], "done")
    waiting = create()  # pending (re-queued, say): whatever run wrote for it is over
    running = create()
    assert runtime.runner._claim(running["id"], running["message_id"]) is not None

    over = [leftover(staging, done["id"], new_id()),
            leftover(staging, waiting["id"], new_id()),
            leftover(staging, new_id(), new_id())]  # a task that no longer exists
    live = leftover(staging, running["id"], running["message_id"])
    foreign = [leftover(staging, running["id"], "notes"), staging / "README"]
    foreign[1].write_text("not a run's\n")

    report = recovery(runtime, grace_s=0.0).run_once()
    assert report.staging_swept == 3
    assert not any(path.exists() for path in over)
    assert live.exists() and (live / "model.safetensors").exists()
    assert all(path.exists() for path in foreign)
    assert recovery(runtime, grace_s=0.0).run_once().staging_swept == 0


def test_recovery_leaves_a_recent_staging_directory_alone(client_factory) -> None:
    client = client_factory(run_worker=False)
    runtime = client.app.state.runtime
    staging = runtime.artifacts.root / ".staging"
    task = client.post(TASKS, json={"embedding_model_id": register_model(client)}).json()
    fresh = leftover(staging, task["id"], new_id(), old=False)  # a run that is just starting
    settling = leftover(staging, task["id"], new_id())  # old, but its task changed just now
    assert recovery(runtime, grace_s=300.0).run_once().staging_swept == 0
    assert fresh.exists() and settling.exists()
    assert runtime.recovery.staging_grace_s > 0  # the service's own recovery sweeps, with grace
    assert runtime.recovery.artifacts is runtime.artifacts


def test_a_failing_sweep_logs_once_not_every_pass(client_factory, caplog, monkeypatch) -> None:
    client = client_factory(run_worker=False)
    runtime = client.app.state.runtime
    sweeper = recovery(runtime, grace_s=0.0)

    def unreadable(_: float) -> list:
        raise OSError("input/output error")  # a failing disk under the staging area

    with caplog.at_level("INFO", logger="embtune.services.recovery"):
        monkeypatch.setattr(runtime.artifacts, "staging_runs", unreadable)
        for _ in range(5):
            sweeper.run_once()
        monkeypatch.undo()
        sweeper.run_once()
    records = [  # this sweeper's (the app's own recovery thread may sweep meanwhile too)
        r for r in caplog.records
        if "staging sweep" in r.getMessage() and r.threadName == "MainThread"
    ]
    assert len(records) == 2, [r.getMessage() for r in records]
    assert records[0].exc_info is not None
    assert "back after" in records[1].getMessage()
