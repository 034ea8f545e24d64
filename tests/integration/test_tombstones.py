"""Deleting an item leaves a tombstone: sessions that showed it keep their results, training
skips them and says how many it skipped; storing the item again removes the tombstone."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select

from embtune.runtime import Runtime
from embtune.storage.tables import ItemTombstoneRow
from tests.conftest import register_model, wait_until

ITEMS = "/api/v1/items"


def tombstones(client: TestClient) -> set[str]:
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with rt.db.read() as session:
        return set(session.scalars(select(ItemTombstoneRow.object_id)))


def upsert(client: TestClient, *object_ids: str) -> None:
    items = [{"object_id": oid, "text": f"text of {oid}"} for oid in object_ids]
    assert client.post(ITEMS, json={"items": items}).status_code == 200


def test_a_deleted_item_leaves_a_tombstone_until_it_is_stored_again(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(run_worker=False)
    upsert(client, "a", "b/1", "c")
    assert client.delete(f"{ITEMS}/b/1").status_code == 204
    deleted = client.post(f"{ITEMS}/delete", json={"object_ids": ["c", "never-stored"]})
    assert deleted.json() == {"deleted": 1}
    assert tombstones(client) == {"b/1", "c"}  # none for an id that never existed
    assert client.delete(f"{ITEMS}/b/1").status_code == 404

    upsert(client, "b/1")
    assert tombstones(client) == {"c"}
    assert client.get(f"{ITEMS}/b/1").status_code == 200


def test_fine_tuning_on_sessions_that_showed_a_deleted_item_succeeds_and_counts_them(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory()
    upsert(client, "a", "b", "c")
    for n, shown in enumerate((["a", "b", "c"], ["b", "a"], ["c", "a"])):
        sid = f"s{n}"
        body = {"session_id": sid, "search_query": f"query {n}",
                "search_results": [{"object_id": oid} for oid in shown]}
        assert client.post("/api/v1/clickstream/session", json=body).status_code == 201
        click = {"session_id": sid, "events": [{"event_id": f"{sid}-c", "object_id": shown[0]}]}
        assert client.post("/api/v1/clickstream/session/events", json=click).status_code == 200
    assert client.delete(f"{ITEMS}/b").status_code == 204  # shown twice, clicked once
    model = register_model(client, plugin="click-counter")

    created = client.post("/api/v1/fine-tuning/task", json={"embedding_model_id": model})
    task_id = created.json()["id"]

    def finished() -> dict | None:
        task = client.get(f"/api/v1/fine-tuning/task/{task_id}").json()
        return task if task["status"] in ("done", "failed", "refused") else None

    task = wait_until(finished, 30)
    assert task["status"] == "done", task["detail"]
    assert task["metrics"]["sessions"] == ["s0", "s1", "s2"]  # the history is unchanged
    assert task["metrics"]["clicks"] == 3
    assert task["metrics"]["skipped_deleted_items"] == 2
    tuned = client.get(f"/api/v1/embedding-models/{task['result_model_id']}").json()
    assert tuned["metrics"]["skipped_deleted_items"] == 2
