"""The task lifecycle on every backend: SQLite + embedded, PostgreSQL + Redis / RabbitMQ."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from tests.conftest import claims, events, register_model, task_status, wait_status, wait_until

TASKS = "/api/v1/fine-tuning/task"


def create(client: TestClient, model_id: str, **body: object) -> dict:
    response = client.post(TASKS, json={"embedding_model_id": model_id, **body})
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_create_runs_to_done_and_registers_an_iteration(client: TestClient, model_id: str) -> None:
    task = create(client, model_id, params={"steps": 3}, metadata={"team": "search"})
    assert task["status"] in ("pending", "processing", "done")  # a fast worker may claim it
    assert task["message_id"]
    done = wait_status(client, task["id"], "done")
    assert done["attempts"] == 1
    assert done["metrics"] == {"steps": 3}
    assert done["progress"]["fraction"] == 1.0
    assert done["started_at"] and done["finished_at"]
    assert done["metadata"] == {"team": "search"}
    model = client.get(f"/api/v1/embedding-models/{done['result_model_id']}").json()
    assert model["parent_id"] == model_id
    assert model["task_id"] == task["id"]
    history = events(client, task["id"])
    transitions = [e["to_status"] for e in history if e["kind"] == "transition"]
    assert transitions == ["pending", "processing", "done"]
    # the run lasts less than one heart-beat: its phases are still recorded, before "done"
    kinds = [(e["kind"], e["message"]) for e in history if e["kind"] != "run"]
    assert kinds[-3:-1] == [("progress", "sleeping"), ("progress", "writing weights")], kinds
    lineage = client.get(f"/api/v1/embedding-models/{model['id']}/lineage").json()
    assert [m["id"] for m in lineage] == [model["id"], model_id]


def test_tuned_iteration_can_be_tuned_again(client: TestClient, model_id: str) -> None:
    first = wait_status(client, create(client, model_id)["id"], "done")
    second = create(client, first["result_model_id"])
    second = wait_status(client, second["id"], "done")
    grandchild = client.get(f"/api/v1/embedding-models/{second['result_model_id']}").json()
    assert grandchild["parent_id"] == first["result_model_id"]


def test_fifty_concurrent_creates_with_one_key_make_one_task_and_one_run(
    client: TestClient, model_id: str
) -> None:
    def post(_: int) -> tuple[int, str]:
        response = client.post(
            TASKS, json={"embedding_model_id": model_id, "idempotency_key": "same-key"}
        )
        return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(post, range(50)))
    ids = {task_id for _, task_id in results}
    assert len(ids) == 1
    assert sorted(code for code, _ in results).count(201) == 1
    assert all(code in (200, 201) for code, _ in results)
    task_id = ids.pop()
    wait_status(client, task_id, "done")
    listed = client.get(TASKS).headers["X-Total-Count"]
    assert listed == "1"
    assert claims(client, task_id) == 1


def test_two_hundred_concurrent_creates_over_twenty_keys_make_twenty_tasks(
    client_factory,
) -> None:
    client = client_factory(run_worker=False)
    model_id = register_model(client)

    def post(n: int) -> tuple[str, str]:
        key = f"key-{n % 20}"
        response = client.post(TASKS, json={"embedding_model_id": model_id, "idempotency_key": key})
        assert response.status_code in (200, 201), response.text
        return key, response.json()["id"]

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(post, range(200)))
    by_key: dict[str, set[str]] = {}
    for key, task_id in results:
        by_key.setdefault(key, set()).add(task_id)
    assert len(by_key) == 20 and all(len(ids) == 1 for ids in by_key.values())
    assert client.get(TASKS).headers["X-Total-Count"] == "20"


def test_same_key_with_another_body_is_409(client: TestClient, model_id: str) -> None:
    first = create(client, model_id, idempotency_key="k1", params={"steps": 2})
    response = client.post(
        TASKS,
        json={"embedding_model_id": model_id, "idempotency_key": "k1", "params": {"steps": 5}},
    )
    assert response.status_code == 409
    assert "k1" in response.json()["detail"]
    wait_status(client, first["id"], "done")  # no run left in flight when the app stops


def test_list_pages_filters_and_counts(client_factory) -> None:
    client = client_factory(run_worker=False)  # nothing runs: statuses stay as we set them
    model_a = register_model(client, name="a")
    model_b = register_model(client, name="b")
    created = [create(client, model_a)["id"] for _ in range(5)]
    created += [create(client, model_b)["id"] for _ in range(3)]
    for task_id in created[:2]:
        assert client.put(f"{TASKS}/{task_id}/cancel").status_code == 200

    first = client.get(TASKS, params={"limit": 3})
    assert first.headers["X-Total-Count"] == "8"
    second = client.get(TASKS, params={"limit": 3, "offset": 3}).json()
    third = client.get(TASKS, params={"limit": 3, "offset": 6}).json()
    paged = [t["id"] for t in first.json() + second + third]
    assert paged == list(reversed(created))  # newest first, no gaps or repeats

    canceled = client.get(TASKS, params={"status": "CANCELED"})
    assert canceled.headers["X-Total-Count"] == "2"
    assert {t["id"] for t in canceled.json()} == set(created[:2])
    for status, model, expected in [
        ("pending", None, 6), ("pending", model_a, 3), ("canceled", model_a, 2),
        ("canceled", model_b, 0), (None, model_b, 3), ("done", None, 0),
    ]:
        query = {k: v for k, v in {"status": status, "embedding_model_id": model}.items() if v}
        assert client.get(TASKS, params=query).headers["X-Total-Count"] == str(expected), query
    restarted = client.put(f"{TASKS}/{created[0]}/restart")
    assert restarted.status_code == 200 and restarted.json()["status"] == "pending"
    assert client.get(TASKS, params={"status": "pending"}).headers["X-Total-Count"] == "7"
    assert client.get(TASKS, params={"status": "canceled"}).headers["X-Total-Count"] == "1"
    by_model = client.get(TASKS, params={"embedding_model_id": model_b, "status": "pending"})
    assert by_model.headers["X-Total-Count"] == "3"


def test_restart_from_failed_and_canceled(client: TestClient, model_id: str) -> None:
    failed = wait_status(client, create(client, model_id, params={"fail": True})["id"], "failed")
    assert "failed on purpose" in failed["detail"]
    canceled = create(client, model_id, params={"steps": 10_000, "step_seconds": 0.01})
    client.put(f"{TASKS}/{canceled['id']}/cancel")
    canceled = wait_status(client, canceled["id"], "canceled")

    for before in (failed, canceled):
        restarted = client.put(f"{TASKS}/{before['id']}/restart").json()
        assert restarted["status"] == "pending"
        assert restarted["message_id"] != before["message_id"]
        assert restarted["attempts"] == 0
        assert restarted["detail"] is None
    wait_status(client, failed["id"], "failed")  # `fail` is in its params: it fails again
    client.put(f"{TASKS}/{canceled['id']}/cancel")  # stop the long one again


def test_restart_of_done_task_is_409_and_its_model_stays_attached(
    client: TestClient, model_id: str
) -> None:
    done = wait_status(client, create(client, model_id)["id"], "done")
    response = client.put(f"{TASKS}/{done['id']}/restart")
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "done" in detail and "new task on the same batch" in detail
    assert done["result_model_id"] in detail
    after = task_status(client, done["id"])
    assert after == done  # nothing wiped: result, metrics, broker id, attempts
    model = client.get(f"/api/v1/embedding-models/{done['result_model_id']}").json()
    assert model["task_id"] == done["id"]
    transitions = [e["to_status"] for e in events(client, done["id"]) if e["kind"] == "transition"]
    assert transitions == ["pending", "processing", "done"]
    assert claims(client, done["id"]) == 1
    # tuning again is a new task on the same batch and model; the first keeps its result
    again = wait_status(client, create(client, model_id, batch_id=done["batch_id"])["id"], "done")
    assert again["result_model_id"] != done["result_model_id"]
    assert task_status(client, done["id"])["result_model_id"] == done["result_model_id"]


def test_restart_while_pending_runs_once(client: TestClient, model_id: str) -> None:
    blocker = create(client, model_id, params={"steps": 10_000, "step_seconds": 0.01})
    wait_status(client, blocker["id"], "processing")
    queued = create(client, model_id)
    restarted = client.put(f"{TASKS}/{queued['id']}/restart").json()
    assert restarted["status"] == "pending"
    assert restarted["message_id"] != queued["message_id"]
    client.put(f"{TASKS}/{blocker['id']}/cancel")
    wait_status(client, queued["id"], "done")
    assert claims(client, queued["id"]) == 1


def test_restart_of_processing_task_is_unchanged(client: TestClient, model_id: str) -> None:
    task = create(client, model_id, params={"steps": 10_000, "step_seconds": 0.01})
    running = wait_status(client, task["id"], "processing")
    again = client.put(f"{TASKS}/{task['id']}/restart").json()
    assert again["status"] == "processing"
    assert again["message_id"] == running["message_id"]
    client.put(f"{TASKS}/{task['id']}/cancel")


def test_cancel_pending_never_runs(client: TestClient, model_id: str) -> None:
    blocker = create(client, model_id, params={"steps": 10_000, "step_seconds": 0.01})
    wait_status(client, blocker["id"], "processing")
    queued = create(client, model_id)
    assert client.put(f"{TASKS}/{queued['id']}/cancel").json()["status"] == "canceled"
    client.put(f"{TASKS}/{blocker['id']}/cancel")
    follower = wait_status(client, create(client, model_id)["id"], "done")  # queue drained past it
    assert follower["status"] == "done"
    assert claims(client, queued["id"]) == 0
    assert task_status(client, queued["id"])["status"] == "canceled"


def test_cancel_running_stops_within_seconds_and_registers_nothing(
    client: TestClient, model_id: str
) -> None:
    task = create(client, model_id, params={"steps": 100_000, "step_seconds": 0.01})
    wait_until(lambda: task_status(client, task["id"])["progress"]["step"] > 0)
    canceled = client.put(f"{TASKS}/{task['id']}/cancel").json()
    assert canceled["status"] == "canceled"
    wait_until(
        lambda: any(e["message"].startswith("run stopped") for e in events(client, task["id"])),
        timeout=5,
    )
    final = task_status(client, task["id"])
    assert final["status"] == "canceled"
    assert final["result_model_id"] is None
    models = client.get("/api/v1/embedding-models").json()
    assert all(m["task_id"] != task["id"] for m in models)


def test_cancel_of_finished_task_is_409_and_canceled_is_unchanged(
    client: TestClient, model_id: str
) -> None:
    done = wait_status(client, create(client, model_id)["id"], "done")
    response = client.put(f"{TASKS}/{done['id']}/cancel")
    assert response.status_code == 409
    after = task_status(client, done["id"])
    assert after["status"] == "done" and after["result_model_id"] == done["result_model_id"]

    refused_id = create(client, model_id, params={"refuse": True})["id"]
    refused = wait_status(client, refused_id, "refused")
    assert client.put(f"{TASKS}/{refused['id']}/cancel").status_code == 409
    assert "no data" in refused["detail"]
    assert refused["attempts"] == 1  # refusals are final, never retried

    pending = create(client, model_id, params={"steps": 10_000, "step_seconds": 0.01})
    first = client.put(f"{TASKS}/{pending['id']}/cancel").json()
    second = client.put(f"{TASKS}/{pending['id']}/cancel")
    assert second.status_code == 200
    assert second.json()["updated_at"] == first["updated_at"]
