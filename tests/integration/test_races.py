"""Cancel and restart racing a worker's completion, over many seeded random interleavings:
every final state is legal, no canceled task has a result, every done task has exactly one."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from embtune.domain.tasks import TaskStatus
from embtune.errors import Conflict
from embtune.storage.tables import EmbeddingModelRow, TaskEventRow
from tests.conftest import register_model

INTERLEAVINGS = int(os.environ.get("EMBTUNE_RACE_INTERLEAVINGS", "1000"))
TASKS = "/api/v1/fine-tuning/task"


@pytest.mark.backends("sqlite-embedded", "postgres-redis")
def test_cancel_and_restart_racing_completion_leave_legal_states(client_factory) -> None:
    client: TestClient = client_factory(run_worker=False)
    runtime = client.app.state.runtime
    model_id = register_model(client)
    rng = random.Random(20261129)
    outcomes: Counter[str] = Counter()

    def worker(task_id: str, message_id: str, delay: float) -> None:
        time.sleep(delay)
        runtime.runner.handle(task_id, message_id)

    def race(seed: int) -> str:
        local = random.Random(seed)
        task, _ = runtime.tasks.create(
            embedding_model_id=model_id, params={"steps": 1, "step_seconds": 0.0}
        )
        threads = [threading.Thread(target=worker,
                                    args=(task.id, task.message_id, local.random() * 0.004))]
        threads[0].start()
        for _ in range(local.randint(1, 3)):
            time.sleep(local.random() * 0.004)
            try:
                if local.random() < 0.5:
                    runtime.tasks.cancel(task.id)
                else:
                    restarted = runtime.tasks.restart(task.id)
                    if restarted.status is TaskStatus.pending and local.random() < 0.5:
                        # a second worker picks up the restart's message while the first runs
                        t = threading.Thread(target=worker,
                                             args=(task.id, restarted.message_id, 0.0))
                        t.start()
                        threads.append(t)
            except Conflict:
                pass  # cancel of a finished task: the legal answer
        for t in threads:
            t.join()
        return task.id

    with ThreadPoolExecutor(4) as pool:
        task_ids = list(pool.map(race, [rng.randrange(2**32) for _ in range(INTERLEAVINGS)]))

    with runtime.db.read() as session:
        for task_id in task_ids:
            task = runtime.tasks.get(task_id)
            outcomes[task.status.value] += 1
            models = session.scalars(
                select(EmbeddingModelRow.id).where(EmbeddingModelRow.task_id == task_id)
            ).all()
            completions = session.scalars(
                select(TaskEventRow.id).where(
                    TaskEventRow.task_id == task_id, TaskEventRow.to_status == "done"
                )
            ).all()
            # every registered model came from a recorded completion, none from a lost race
            assert len(models) == len(completions), task_id
            assert task.status is not TaskStatus.processing, task_id  # all runs have ended
            if task.status is TaskStatus.canceled:
                assert task.result_model_id is None
            if task.status is TaskStatus.done:
                assert task.result_model_id in models
            if task.status in (TaskStatus.failed, TaskStatus.refused):
                pytest.fail(f"task {task_id} ended {task.status}: {task.detail}")
    print(f"{INTERLEAVINGS} interleavings: {dict(outcomes)}")
    assert sum(outcomes.values()) == INTERLEAVINGS
    assert outcomes["done"] and outcomes["canceled"], "both outcomes should occur"
    # the list totals, kept as tallies by the racing transactions, still match the rows
    for status, expected in outcomes.items():
        listed = client.get(TASKS, params={"status": status, "limit": 1})
        assert listed.headers["X-Total-Count"] == str(expected), status
    assert client.get(TASKS, params={"limit": 1}).headers["X-Total-Count"] == str(INTERLEAVINGS)
