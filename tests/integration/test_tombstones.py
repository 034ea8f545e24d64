"""Deleting an item leaves a tombstone: sessions that showed it keep their results, training
skips them and says how many it skipped; storing the item again removes the tombstone."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from embtune.runtime import Runtime
from embtune.storage.tables import ItemTombstoneRow
from tests.conftest import register_model, wait_until
from tests.support.training_data import shop_jargon_data

ITEMS = "/api/v1/items"


def tombstones(client: TestClient) -> set[str]:
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with rt.db.read() as session:
        return set(session.scalars(select(ItemTombstoneRow.object_id)))


def upsert(client: TestClient, *object_ids: str) -> None:
    upsert_texts(client, {oid: f"text of {oid}" for oid in object_ids})


def upsert_texts(client: TestClient, texts: dict[str, str]) -> None:
    items = [{"object_id": oid, "text": text} for oid, text in texts.items()]
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


@pytest.mark.slow
@pytest.mark.backends("sqlite-embedded")
def test_a_real_fine_tune_skips_deleted_items_shown_and_clicked(
    client_factory: Callable[..., TestClient],
) -> None:
    """The built-in method on the tiny shop after deleting clicked products and shown decoys:
    its rows, the click-based evaluation and the position-bias estimate all skip them."""
    client = client_factory()
    data = shop_jargon_data()
    upsert_texts(client, data.item_texts())
    for s in data.sessions():
        body = {"session_id": s.session_id, "search_query": s.query,
                "search_results": [{"object_id": oid} for oid in s.results]}
        assert client.post("/api/v1/clickstream/session", json=body).status_code == 201
        clicks = [{"event_id": f"{s.session_id}-{i}", "object_id": oid}
                  for i, oid in enumerate(s.clicks)]
        pushed = client.post("/api/v1/clickstream/session/events",
                             json={"session_id": s.session_id, "events": clicks})
        assert pushed.status_code == 200
    gone = ["p00", "p01", "d02", "d03"]
    assert client.post(f"{ITEMS}/delete", json={"object_ids": gone}).json() == {"deleted": 4}
    shown = sum(oid in gone for s in data.sessions() for oid in s.results)
    model = register_model(client, plugin="sentence-transformers-mnrl")
    params = {"max_seq_length": 32, "batch_size": 8, "learning_rate": 5e-4, "epochs": 1,
              "seed": 0}
    created = client.post("/api/v1/fine-tuning/task",
                          json={"embedding_model_id": model, "params": params})
    url = f"/api/v1/fine-tuning/task/{created.json()['id']}"
    task = wait_until(
        lambda: (t := client.get(url).json())["status"] in ("done", "failed", "refused") and t,
        240,
    )
    assert task["status"] == "done", task["detail"]
    assert task["metrics"]["skipped_deleted_items"] == shown > 0
    assert task["metrics"]["data"]["clicked_items_without_text"] == 2
    assert task["metrics"]["data"]["items"] == len(data.item_texts()) - 4
