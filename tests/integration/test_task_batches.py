"""Tasks and clickstream batches: what a run trains on, and that no session is trained twice."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait

import pytest
from fastapi.testclient import TestClient

from embtune.errors import TaskStopped
from tests.conftest import register_model, wait_until
from tests.support.gates import Gate, GatedClickstream

TASKS = "/api/v1/fine-tuning/task"


def ingest(client: TestClient, session_ids: list[str]) -> None:
    client.post("/api/v1/items", json={"items": [{"object_id": "a", "text": "alpha"},
                                                  {"object_id": "b", "text": "beta"}]})
    for sid in session_ids:
        body = {"session_id": sid, "search_query": "q",
                "search_results": [{"object_id": "a"}, {"object_id": "b"}]}
        assert client.post("/api/v1/clickstream/session", json=body).status_code == 201
        events = {"session_id": sid, "events": [{"event_id": f"{sid}-1", "object_id": "b"}]}
        assert client.post("/api/v1/clickstream/session/events", json=events).status_code == 200


def finished(client: TestClient, task_id: str) -> dict:
    def final() -> dict | None:
        task = client.get(f"{TASKS}/{task_id}").json()
        return task if task["status"] in ("done", "failed", "refused", "canceled") else None

    return wait_until(final, 30)


def test_task_without_batch_releases_the_open_batch_and_records_it(client: TestClient) -> None:
    model = register_model(client, plugin="click-counter")
    ingest(client, ["s1", "s2", "s3"])
    task = finished(client, client.post(TASKS, json={"embedding_model_id": model}).json()["id"])
    assert task["status"] == "done", task["detail"]
    assert task["metrics"]["sessions"] == ["s1", "s2", "s3"]
    assert task["metrics"]["clicks"] == 3
    batch = client.get(f"/api/v1/clickstream/batch/{task['batch_id']}").json()
    assert batch["status"] == "released" and batch["sessions_count"] == 3
    assert batch["task_ids"] == [task["id"]]
    # tuning again on that batch trains on the very same sessions, not on whatever arrived since;
    # a click that arrived late joined its session, so this run sees it
    ingest(client, ["s4"])
    late = {"session_id": "s1", "events": [{"event_id": "s1-late", "object_id": "a"}]}
    assert client.post("/api/v1/clickstream/session/events", json=late).status_code == 200
    body = {"embedding_model_id": model, "batch_id": task["batch_id"]}
    again = finished(client, client.post(TASKS, json=body).json()["id"])
    assert again["batch_id"] == task["batch_id"]
    assert again["metrics"]["sessions"] == ["s1", "s2", "s3"]
    assert again["metrics"]["clicks"] == 4
    listed = client.get(f"/api/v1/clickstream/batch/{task['batch_id']}").json()
    assert listed["task_ids"] == [task["id"], again["id"]]  # oldest first


def test_task_with_empty_batch_is_refused_with_a_reason(client: TestClient) -> None:
    model = register_model(client, plugin="click-counter")
    task = finished(client, client.post(TASKS, json={"embedding_model_id": model}).json()["id"])
    assert task["status"] == "refused"
    assert "no clickstream" in task["detail"]
    assert task["attempts"] == 1


def test_unknown_batch_is_404_at_create(client: TestClient) -> None:
    model = register_model(client, plugin="click-counter")
    response = client.post(TASKS, json={"embedding_model_id": model, "batch_id": "nope"})
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


def test_tasks_starting_together_never_train_on_the_same_sessions(client_factory) -> None:
    client = client_factory(worker_threads=4)
    model = register_model(client, plugin="click-counter")
    ingest(client, [f"s{i}" for i in range(6)])

    def create(n: int) -> str:
        body = {"embedding_model_id": model, "params": {"step_seconds": 0.2}}
        return client.post(TASKS, json=body).json()["id"]

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(create, range(4)))
    tasks = [finished(client, task_id) for task_id in ids]
    done = [t for t in tasks if t["status"] == "done"]
    assert len(done) == 1, [t["detail"] for t in tasks]
    assert done[0]["metrics"]["sessions"] == [f"s{i}" for i in range(6)]
    assert all(t["status"] == "refused" for t in tasks if t is not done[0])


def test_preflight_validates_like_create_and_stores_nothing(client: TestClient) -> None:
    model = register_model(client, plugin="click-counter")
    ingest(client, ["s1"])
    response = client.post(f"{TASKS}/preflight", json={"embedding_model_id": model})
    assert response.status_code == 200
    body = response.json()
    assert body["plugin_name"] == "click-counter" and body["batch_id"]
    bad = client.post(f"{TASKS}/preflight",
                      json={"embedding_model_id": model, "params": {"steps": -1}})
    assert bad.status_code == 422
    assert client.get(TASKS).headers["X-Total-Count"] == "0"
    assert client.get(f"/api/v1/clickstream/batch/{body['batch_id']}").json()["status"] == "open"


# -- a cancel at the start of a run never orphans the clickstream (issue 10, item 1) ----------
SIXTY = [f"s{i:02d}" for i in range(60)]


def ingest_directly(client: TestClient, session_ids: list[str]) -> None:
    """`ingest` through the service: the same writes, without 120 HTTP round trips."""
    clickstream = client.app.state.runtime.clickstream
    client.app.state.runtime.catalogue.upsert_items([{"object_id": "a", "text": "alpha"},
                                                     {"object_id": "b", "text": "beta"}])
    for sid in session_ids:
        clickstream.ingest_session(session_id=sid, search_query="q",
                                   search_results=[{"object_id": "a"}, {"object_id": "b"}])
        clickstream.push_events(sid, [{"event_id": f"{sid}-1", "object_id": "b"}])


def slow(model: str) -> dict:
    """A run that trains for half a second after its release: a cancel always lands during it."""
    return {"embedding_model_id": model, "params": {"step_seconds": 0.5}}


def gate_runs(client: TestClient, **gates: Gate) -> GatedClickstream:
    runtime = client.app.state.runtime
    gated = GatedClickstream(runtime.db, runtime.settings, **gates)
    runtime.runner.clickstream = gated
    return gated


def batches(client: TestClient) -> list[dict]:
    return client.get("/api/v1/clickstream/batch", params={"limit": 1000}).json()


def assert_no_orphan(client: TestClient) -> None:
    orphans = [b for b in batches(client) if b["status"] == "released" and not b["task_ids"]]
    assert orphans == []


def restart_trains_on_the_sixty(client: TestClient, task_id: str) -> dict:
    assert client.put(f"{TASKS}/{task_id}/restart").status_code == 200
    task = finished(client, task_id)
    assert task["status"] == "done", task["detail"]
    assert task["metrics"]["sessions"] == SIXTY and task["metrics"]["clicks"] == 60
    listed = {b["id"]: b for b in batches(client)}
    assert listed[task["batch_id"]]["task_ids"] == [task_id]
    assert listed[task["batch_id"]]["sessions_count"] == 60
    assert_no_orphan(client)
    return task


def test_cancel_before_the_release_leaves_the_sessions_in_the_open_batch(
    client: TestClient,
) -> None:
    model = register_model(client, plugin="click-counter")
    ingest_directly(client, SIXTY)
    gate = Gate()
    gated = gate_runs(client, before=gate)
    try:
        task_id = client.post(TASKS, json={"embedding_model_id": model}).json()["id"]
        gate.wait_reached()  # claimed: the run is about to release the open batch
        assert client.put(f"{TASKS}/{task_id}/cancel").json()["status"] == "canceled"
    finally:
        gate.go.set()
    assert gated.returned.wait(15)
    task = client.get(f"{TASKS}/{task_id}").json()
    assert (task["status"], task["batch_id"]) == ("canceled", None)
    [open_batch] = batches(client)  # nothing released: the sessions wait for the next run
    assert (open_batch["status"], open_batch["sessions_count"]) == ("open", 60)
    assert open_batch["task_ids"] == []
    restart_trains_on_the_sixty(client, task_id)


def test_cancel_during_the_release_waits_for_the_batch_to_be_recorded(
    client: TestClient,
) -> None:
    """The window that used to orphan the batch: released, not yet recorded on the task."""
    model = register_model(client, plugin="click-counter")
    ingest_directly(client, SIXTY)
    gate = Gate()
    gated = gate_runs(client, released=gate)
    with ThreadPoolExecutor(1) as pool:
        try:
            task_id = client.post(TASKS, json=slow(model)).json()["id"]
            gate.wait_reached()
            cancel = pool.submit(client.put, f"{TASKS}/{task_id}/cancel")
            # it must wait for the release's transaction; one that does not is the bug
            held = not wait([cancel], timeout=0.5).done
        finally:
            gate.go.set()
        assert held, "the cancel overtook a release not yet recorded on the task"
        canceled = cancel.result(timeout=15)
        assert canceled.status_code == 200, canceled.text
    assert gated.returned.wait(15)
    task = client.get(f"{TASKS}/{task_id}").json()
    assert task["status"] == "canceled" and task["batch_id"] is not None
    assert_no_orphan(client)
    again = restart_trains_on_the_sixty(client, task_id)
    assert again["batch_id"] == task["batch_id"]  # the very batch released before the cancel


def test_the_run_releases_nothing_once_it_no_longer_owns_the_task(client: TestClient) -> None:
    """The service's guard itself: a message that lost its task releases nothing."""
    ingest_directly(client, ["s1"])
    clickstream = client.app.state.runtime.clickstream
    model = register_model(client, plugin="click-counter")
    gate = Gate()
    gate_runs(client, before=gate)
    try:
        task_id = client.post(TASKS, json={"embedding_model_id": model}).json()["id"]
        gate.wait_reached()
        message_id = client.app.state.runtime.tasks.get(task_id).message_id
        client.put(f"{TASKS}/{task_id}/cancel")
        with pytest.raises(TaskStopped):
            clickstream.release_for_task(task_id, message_id)
        with pytest.raises(TaskStopped):
            clickstream.release_for_task("no-such-task", message_id)
    finally:
        gate.go.set()
    assert [b["status"] for b in batches(client)] == ["open"]


def test_issue_repro_cancel_at_once_then_restart_trains_on_the_sessions(
    client: TestClient,
) -> None:
    model = register_model(client, plugin="click-counter")
    ingest(client, SIXTY)
    task_id = client.post(TASKS, json=slow(model)).json()["id"]
    assert client.put(f"{TASKS}/{task_id}/cancel").status_code == 200
    wait_until(lambda: client.get(f"{TASKS}/{task_id}").json()["status"] == "canceled")
    assert_no_orphan(client)
    restart_trains_on_the_sixty(client, task_id)
