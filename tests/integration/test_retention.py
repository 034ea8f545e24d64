"""Retention: released batches older than the limit lose their sessions in bounded chunks,
except a batch a task needs (pending, processing, or its model's newest done task)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from embtune.domain.tasks import Transition
from embtune.runtime import Runtime
from embtune.storage.db import utcnow
from embtune.storage.tables import BatchRow, ClickEventRow, SearchSessionRow, SessionResultRow
from embtune.storage.tasks_repo import TaskRepository
from tests.conftest import register_model, wait_status

TASKS = "/api/v1/fine-tuning/task"
RUN = "/api/v1/clickstream/retention/run"
# One day: the batches a test releases are made old by moving `released_at` back, so the pass the
# server starts with (while a test is still ingesting) finds nothing to prune.
SETTINGS: dict[str, Any] = {
    "clickstream_retention_days": 1,
    "retention_interval_s": 3600,
    "retention_chunk_sessions": 2,
}


def release_batch(client: TestClient, prefix: str, sessions: int) -> str:
    """`sessions` sessions of two results and one click each, released as one batch."""
    client.post("/api/v1/items", json={"items": [{"object_id": "a", "text": "alpha"},
                                                  {"object_id": "b", "text": "beta"}]})
    for n in range(sessions):
        sid = f"{prefix}-{n}"
        body = {"session_id": sid, "search_query": "q", "user_id": f"user-{n}",
                "search_results": [{"object_id": "a"}, {"object_id": "b"}]}
        assert client.post("/api/v1/clickstream/session", json=body).status_code == 201
        click = {"session_id": sid, "events": [{"event_id": f"{sid}-c", "object_id": "b"}]}
        assert client.post("/api/v1/clickstream/session/events", json=click).status_code == 200
    released = client.post("/api/v1/clickstream/batch/release")
    assert released.status_code == 200, released.text
    return released.json()["id"]


def age(rt: Runtime, *batch_ids: str, days: float = 2) -> None:
    with rt.db.transaction() as session:
        session.execute(
            update(BatchRow)
            .where(BatchRow.id.in_(batch_ids))
            .values(released_at=utcnow() - timedelta(days=days))
        )


def rows_of(rt: Runtime, batch_id: str) -> tuple[int, int, int]:
    """(sessions, results, events) stored for the batch."""
    in_batch = select(SearchSessionRow.session_id).where(SearchSessionRow.batch_id == batch_id)
    with rt.db.read() as session:
        return (
            session.scalar(select(func.count()).select_from(in_batch.subquery())) or 0,
            session.scalar(select(func.count()).select_from(SessionResultRow)
                           .where(SessionResultRow.session_id.in_(in_batch))) or 0,
            session.scalar(select(func.count()).select_from(ClickEventRow)
                           .where(ClickEventRow.session_id.in_(in_batch))) or 0,
        )


def create_task(client: TestClient, model: str, batch_id: str) -> str:
    created = client.post(TASKS, json={"embedding_model_id": model, "batch_id": batch_id})
    assert created.status_code == 201, created.text
    return created.json()["id"]


def move(rt: Runtime, task_id: str, *transitions: Transition) -> None:
    """Drive a task through the state machine as a worker would (no worker runs here)."""
    repo = TaskRepository()
    with rt.db.transaction() as session:
        task = repo.get(session, task_id)
        assert task is not None and task.message_id
        for transition in transitions:
            values = {"finished_at": utcnow()} if transition is not Transition.claim else {}
            if transition is Transition.claim:
                assert repo.claim(session, task_id, task.message_id, "test", utcnow())
            else:
                assert repo.apply(session, task_id, transition, message_id=task.message_id,
                                  values=values)


def test_retention_prunes_old_batches_in_chunks_but_never_one_a_task_needs(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(run_worker=False, **SETTINGS)
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    model, other_model = (register_model(client, "click-counter", name) for name in ("m", "n"))
    old_done, pruned = release_batch(client, "old", 5), release_batch(client, "gone", 1)
    newest_done, pending, processing, failed, other_done, young = (
        release_batch(client, name, 1)
        for name in ("new", "pend", "proc", "fail", "other", "young")
    )
    move(rt, create_task(client, model, old_done), Transition.claim, Transition.complete)
    move(rt, create_task(client, model, newest_done), Transition.claim, Transition.complete)
    move(rt, create_task(client, other_model, other_done), Transition.claim, Transition.complete)
    create_task(client, model, pending)
    move(rt, create_task(client, model, processing), Transition.claim)
    move(rt, create_task(client, model, failed), Transition.claim, Transition.fail)
    age(rt, old_done, pruned, newest_done, pending, processing, failed, other_done)

    report = client.post(RUN).json()

    assert report == {"batches": 3, "kept": 4, "sessions": 7, "results": 14, "events": 7,
                      "retention_days": 1}
    for batch_id in (old_done, pruned, failed):
        assert rows_of(rt, batch_id) == (0, 0, 0)
        batch = client.get(f"/api/v1/clickstream/batch/{batch_id}").json()
        assert batch["status"] == "pruned" and batch["sessions_count"] == 0
    for batch_id in (newest_done, pending, processing, other_done, young):
        assert rows_of(rt, batch_id) == (1, 2, 1), batch_id
    with rt.db.read() as session:  # results have no foreign key to sessions: none left over
        assert session.scalar(select(func.count()).select_from(SessionResultRow)) == 10
        assert client.get(f"/api/v1/clickstream/batch/{batch_id}").json()["status"] == "released"
    page = client.get("/api/v1/clickstream/batch", params={"limit": 100}).json()
    listed = {batch["id"]: batch["status"] for batch in page}
    assert listed[old_done] == "pruned"

    trail = client.get("/api/v1/audit", params={"action": "prune_batch"})
    assert trail.headers["X-Total-Count"] == "3"
    details = {e["detail"]["batch_id"]: e for e in trail.json()}
    five = details[old_done]
    assert five["actor"] == "retention"
    # 5 sessions in chunks of 2: three transactions (2, 2, 1), the last one marks it complete
    assert five["detail"] == {"batch_id": old_done, "sessions": 5, "results": 10, "events": 5,
                              "chunks": 3, "complete": True, "resumed": False}
    # nothing left to do: a second pass prunes nothing
    assert client.post(RUN).json()["batches"] == 0


def test_a_pass_interrupted_after_its_decision_is_finished_by_the_next(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(run_worker=False, **SETTINGS)
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    batch_id = release_batch(client, "s", 3)
    age(rt, batch_id)
    stops = iter([False, False, True])  # the decision, one chunk, then the process stops
    first = rt.retention.run_once(should_stop=lambda: next(stops, True))
    assert (first.batches, first.deleted.sessions) == (1, 2)
    assert rows_of(rt, batch_id)[0] == 1
    # a task created now names a pruned batch: its run is refused, never trains on the rest
    assert client.get(f"/api/v1/clickstream/batch/{batch_id}").json()["status"] == "pruned"
    # a session still being deleted takes no more events through the bulk path either
    with rt.db.read() as session:
        left = session.scalar(select(SearchSessionRow.session_id)
                              .where(SearchSessionRow.batch_id == batch_id))
    again = {"session_id": left, "search_query": "q", "clicks": ["a"],
             "search_results": [{"object_id": "a"}, {"object_id": "b"}]}
    bulk = client.post("/api/v1/clickstream/sessions:bulk", json={"sessions": [again]}).json()
    assert bulk["rejected"] == 1 and "pruned" in bulk["results"][0]["reason"], bulk

    second = client.post(RUN).json()
    assert (second["batches"], second["sessions"]) == (1, 1)
    assert rows_of(rt, batch_id) == (0, 0, 0)
    resumed = [e["detail"] for e in client.get("/api/v1/audit").json()]
    assert [(d["sessions"], d["complete"], d["resumed"]) for d in resumed] == [
        (1, True, True), (2, False, False),
    ]


def test_restarting_a_task_whose_batch_was_pruned_is_refused_with_a_clear_detail(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(run_worker=False, **SETTINGS)
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    model = register_model(client, "click-counter")
    batch_id = release_batch(client, "s", 2)
    task_id = create_task(client, model, batch_id)
    assert client.put(f"{TASKS}/{task_id}/cancel").status_code == 200
    age(rt, batch_id)
    assert client.post(RUN).json()["batches"] == 1

    rt.start_worker()  # stopped by the app's shutdown
    assert client.put(f"{TASKS}/{task_id}/restart").status_code == 200
    task = wait_status(client, task_id, "refused")
    assert "was pruned by retention" in task["detail"]
    preflight = client.post(f"{TASKS}/preflight",
                            json={"embedding_model_id": model, "batch_id": batch_id})
    assert preflight.status_code == 409 and "pruned" in preflight.json()["detail"]
    # nor can a new task name it
    refused = client.post(TASKS, json={"embedding_model_id": model, "batch_id": batch_id})
    assert refused.status_code == 409 and "pruned" in refused.json()["detail"]
    # the pruned batch's sessions take no more events
    click = {"session_id": "s-0", "events": [{"event_id": "late", "object_id": "a"}]}
    assert client.post("/api/v1/clickstream/session/events", json=click).status_code == 404


def test_retention_off_prunes_nothing(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(run_worker=False)
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    batch_id = release_batch(client, "s", 1)
    age(rt, batch_id, days=10_000)
    assert client.post(RUN).json() == {"batches": 0, "kept": 0, "sessions": 0, "results": 0,
                                       "events": 0, "retention_days": 0}
    assert rows_of(rt, batch_id) == (1, 2, 1)
