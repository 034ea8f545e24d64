"""Tasks and clickstream batches: what a run trains on, and that no session is trained twice."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from tests.conftest import register_model, wait_until

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
    # a restart retrains on the very same batch, not on whatever arrived since
    ingest(client, ["s4"])
    client.put(f"{TASKS}/{task['id']}/restart")
    again = finished(client, task["id"])
    assert again["batch_id"] == task["batch_id"]
    assert again["metrics"]["sessions"] == ["s1", "s2", "s3"]


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
