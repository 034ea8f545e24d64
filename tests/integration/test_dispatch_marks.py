"""Sent messages are recorded (`dispatched_at`) in batches after the send, never for a message
the task no longer carries, and not lost when the database refuses a batch for a while."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from embtune.errors import Unavailable
from embtune.services.dispatch_marks import DispatchMarks
from embtune.storage.db import Database
from embtune.storage.task_rows import TASKS as TASK_TABLE
from tests.conftest import register_model, wait_until

pytestmark = pytest.mark.backends("sqlite-embedded", "postgres-redis")
TASKS = "/api/v1/fine-tuning/task"


def dispatched_at(client: TestClient, task_id: str) -> object:
    runtime = client.app.state.runtime
    return runtime.tasks.get(task_id).dispatched_at


def test_every_sent_create_is_marked_soon_after(client_factory) -> None:
    client = client_factory(run_worker=False)
    model_id = register_model(client)
    ids = [client.post(TASKS, json={"embedding_model_id": model_id}).json()["id"]
           for _ in range(30)]
    wait_until(lambda: all(dispatched_at(client, i) is not None for i in ids), timeout=10)


def test_a_mark_for_a_replaced_message_changes_nothing(client_factory) -> None:
    client = client_factory(run_worker=False)
    runtime = client.app.state.runtime
    task = client.post(TASKS, json={"embedding_model_id": register_model(client)}).json()
    wait_until(lambda: dispatched_at(client, task["id"]) is not None, timeout=10)
    restarted = client.put(f"{TASKS}/{task['id']}/restart").json()
    assert restarted["message_id"] != task["message_id"]
    runtime.tasks.marks.flush()
    stale = DispatchMarks(runtime.db)
    with runtime.db.transaction() as session:  # the restart's own mark, if any, is undone
        session.execute(TASK_TABLE.update().values(dispatched_at=None))
    stale.add(task["id"], task["message_id"])  # the old message's mark arrives late
    stale.close()
    assert dispatched_at(client, task["id"]) is None


class FlakyDatabase(Database):
    """The real database, refusing the first `failures` write transactions."""

    def __init__(self, db: Database, failures: int) -> None:
        super().__init__(db.engine)
        self.failures = failures

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        if self.failures:
            self.failures -= 1
            raise Unavailable("database unavailable: test outage")
        with super().transaction() as session:
            yield session


def test_marks_survive_a_refused_batch_and_are_written_later(client_factory) -> None:
    client = client_factory(run_worker=False)
    runtime = client.app.state.runtime
    model_id = register_model(client)
    ids = [client.post(TASKS, json={"embedding_model_id": model_id}).json()["id"]
           for _ in range(5)]
    runtime.tasks.marks.flush()
    with runtime.db.transaction() as session:
        session.execute(TASK_TABLE.update().values(dispatched_at=None))
    flaky = FlakyDatabase(runtime.db, failures=2)
    marks = DispatchMarks(flaky, gather_s=0.0)
    for task_id in ids:
        marks.add(task_id, runtime.tasks.get(task_id).message_id)
    wait_until(lambda: all(dispatched_at(client, i) is not None for i in ids), timeout=10)
    assert flaky.failures == 0  # the marks were refused twice, kept, and written on retry
    marks.close()
