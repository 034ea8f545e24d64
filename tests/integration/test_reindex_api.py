"""Reindex tasks, search and vectors through the HTTP API: refusals that name the field, the
idempotent create, kinds kept apart on the shared task verbs, and one real reindex into a
Parquet sink that is then downloaded and searched."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from tests.conftest import register_model, wait_until

REINDEX = "/api/v1/reindex/task"
TASKS = "/api/v1/fine-tuning/task"
MODELS = "/api/v1/embedding-models"
SEARCH = "/api/v1/search"
MISSING_MODEL = "0" * 32


@pytest.fixture
def idle(client_factory: Callable[..., TestClient]) -> TestClient:
    """No task runs here: an app without its in-process worker starts and stops fast."""
    return client_factory(run_worker=False)


def create(client: TestClient, expected: int = 201, **body: Any) -> dict[str, Any]:
    response = client.post(REINDEX, json=body)
    assert response.status_code == expected, response.text
    return response.json()


def field_errors(response: Any) -> list[tuple[list[Any], str]]:
    assert response.status_code == 422, response.text
    return [(e["loc"], e["msg"]) for e in response.json()["detail"]]


def test_create_answers_the_task_with_its_kind_and_sink(idle: TestClient) -> None:
    model_id = register_model(idle)
    task = create(idle, model_id=model_id, sink={"type": "parquet", "name": "shop"},
                  metadata={"why": "test"})
    assert task["kind"] == "reindex" and task["status"] == "pending"
    assert task["embedding_model_id"] == model_id
    assert task["sink"] == {"type": "parquet", "name": "shop", "url": None}
    assert (task["incremental"], task["alias"], task["metadata"]) == (False, None,
                                                                      {"why": "test"})
    assert task["can_cancel"] and task["can_restart"]
    assert idle.get(f"{REINDEX}/{task['id']}").json() == task


@pytest.mark.parametrize("sink,field", [
    ({"type": "nope"}, "type"),
    ({"name": "catalogue"}, "type"),
    ({"type": "qdrant", "url": "ftp://qdrant:6333"}, "url"),
    ({"type": "qdrant", "timeout_s": 0}, "timeout_s"),
    ({"type": "parquet", "name": "bad name!"}, "name"),
    ({"type": "parquet", "url": "relative/dir"}, "url"),
    ({"type": "parquet", "bogus": 1}, "bogus"),
])
def test_a_bad_sink_config_is_a_422_naming_the_field(
    idle: TestClient, sink: dict[str, Any], field: str
) -> None:
    model_id = register_model(idle)
    errors = field_errors(idle.post(REINDEX, json={"model_id": model_id, "sink": sink}))
    assert errors[0][0] == ["body", "sink", field], errors
    assert idle.get(REINDEX).headers["X-Total-Count"] == "0"  # nothing stored


def test_exactly_one_of_model_and_alias(idle: TestClient) -> None:
    model_id = register_model(idle)
    for body in ({}, {"model_id": model_id, "alias": "production"}):
        errors = field_errors(idle.post(REINDEX, json=body))
        assert errors == [(["body", "model_id"], errors[0][1])]
        assert "exactly one of model_id and alias" in errors[0][1]
    for body in ({"query": "x"}, {"query": "x", "model_id": model_id, "alias": "a"}):
        assert field_errors(idle.post(SEARCH, json=body))[0][0] == ["body", "model_id"]


def test_unknown_model_or_alias_is_a_404_naming_it(idle: TestClient) -> None:
    response = idle.post(REINDEX, json={"model_id": MISSING_MODEL})
    assert response.status_code == 404
    assert response.json()["detail"].startswith("model_id: ") and MISSING_MODEL in response.text
    response = idle.post(REINDEX, json={"alias": "production"})
    assert response.status_code == 404
    assert response.json()["detail"].startswith("alias: ") and "production" in response.text


def test_create_is_idempotent_per_key(idle: TestClient) -> None:
    model_id = register_model(idle)
    body = {"model_id": model_id, "sink": {"type": "parquet"}, "idempotency_key": "nightly-1"}
    first = create(idle, **body)
    again = create(idle, expected=200, **body)
    assert again["id"] == first["id"]
    response = idle.post(REINDEX, json={**body, "incremental": True})
    assert response.status_code == 409 and first["id"] in response.json()["detail"]
    # keys are shared with fine-tuning tasks: one key names one task of any kind
    response = idle.post(TASKS, json={"embedding_model_id": model_id,
                                      "idempotency_key": "nightly-1"})
    assert response.status_code == 409
    assert idle.get(REINDEX).headers["X-Total-Count"] == "1"


def test_kinds_are_apart_on_the_shared_verbs(idle: TestClient) -> None:
    model_id, other = register_model(idle), register_model(idle, name="other")
    reindex = create(idle, model_id=model_id, sink={"type": "parquet"})
    create(idle, model_id=other, sink={"type": "parquet"})
    tuning = idle.post(TASKS, json={"embedding_model_id": model_id}).json()

    for suffix, method in (("", "get"), ("/events", "get"), ("/cancel", "put"),
                           ("/restart", "put")):
        assert getattr(idle, method)(f"{TASKS}/{reindex['id']}{suffix}").status_code == 404
        assert getattr(idle, method)(f"{REINDEX}/{tuning['id']}{suffix}").status_code == 404

    assert idle.get(TASKS).headers["X-Total-Count"] == "1"
    listed = idle.get(REINDEX)
    assert listed.headers["X-Total-Count"] == "2"
    assert {t["kind"] for t in listed.json()} == {"reindex"}
    mine = idle.get(REINDEX, params={"embedding_model_id": model_id})
    assert [t["id"] for t in mine.json()] == [reindex["id"]]
    assert idle.get(REINDEX, params={"status": "DONE"}).headers["X-Total-Count"] == "0"
    assert field_errors(idle.get(REINDEX, params={"status": "finished"}))[0][0] == [
        "query", "status"]


def test_cancel_and_restart_a_pending_reindex(idle: TestClient) -> None:
    task = create(idle, model_id=register_model(idle), sink={"type": "parquet"})
    canceled = idle.put(f"{REINDEX}/{task['id']}/cancel")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled" and canceled.json()["kind"] == "reindex"
    history = idle.get(f"{REINDEX}/{task['id']}/events").json()
    assert [e["to_status"] for e in history] == ["pending", "canceled"]
    restarted = idle.put(f"{REINDEX}/{task['id']}/restart").json()
    assert restarted["status"] == "pending" and restarted["message_id"] != task["message_id"]


def test_search_and_vectors_before_any_reindex(idle: TestClient) -> None:
    model_id = register_model(idle)
    assert idle.put("/api/v1/aliases/production", json={"model_id": model_id}).status_code == 200

    response = idle.post(SEARCH, json={"alias": "production", "query": "red shoes"})
    assert response.status_code == 409 and "names no sink" in response.json()["detail"]
    response = idle.post(SEARCH, json={"model_id": model_id, "query": "red shoes"})
    assert response.status_code == 409 and "reindex it first" in response.json()["detail"]
    assert idle.post(SEARCH, json={"alias": "nope", "query": "x"}).status_code == 404
    assert field_errors(idle.post(SEARCH, json={"model_id": model_id, "query": "x", "k": 101}))[
        0][0] == ["body", "k"]

    response = idle.get(f"{MODELS}/{model_id}/vectors")
    assert response.status_code == 404
    assert '"sink": {"type": "parquet"}' in response.json()["detail"]  # the hint
    assert idle.get(f"{MODELS}/{MISSING_MODEL}/vectors").status_code == 404
    assert idle.get(f"{MODELS}/production/collections").json() == []
    assert idle.get(f"{MODELS}/{MISSING_MODEL}/collections").status_code == 404


@pytest.mark.backends("sqlite-embedded")
def test_reindex_into_parquet_then_download_and_search(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory()
    model_id = register_model(client)
    items = [{"object_id": f"item-{i:02d}", "text": text} for i, text in enumerate(
        f"{colour} {thing}" for colour in ("red", "green", "blue", "black")
        for thing in ("wool scarf", "leather boots", "silk tie", "denim jacket", "linen shirt"))]
    assert client.post("/api/v1/items", json={"items": items}).status_code == 200

    task = create(client, model_id=model_id, sink={"type": "parquet"})

    def finished() -> dict[str, Any] | None:
        current = client.get(f"{REINDEX}/{task['id']}").json()
        return current if current["status"] in ("done", "failed", "refused") else None

    done = wait_until(finished, timeout=120, interval=0.1)
    assert done["status"] == "done", done["detail"]
    metrics = done["metrics"]
    assert (metrics["mode"], metrics["items"], metrics["encoded"] + metrics["reused"]) == (
        "full", 20, 20)
    assert any(e["kind"] == "switch" for e in client.get(f"{REINDEX}/{task['id']}/events").json())

    collections = client.get(f"{MODELS}/{model_id}/collections").json()
    assert [(c["collection"], c["state"], c["items"], c["task_id"]) for c in collections] == [
        (metrics["collection"], "live", 20, task["id"])]

    response = client.get(f"{MODELS}/{model_id}/vectors")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    assert int(response.headers["content-length"]) == len(response.content)
    assert f'filename="{model_id}-' in response.headers["content-disposition"]
    table = pq.read_table(io.BytesIO(response.content))
    assert table.num_rows == 20
    vector_type = table.schema.field("vector").type
    assert pa.types.is_fixed_size_list(vector_type) and vector_type.value_type == pa.float32()
    assert sorted(table.column("object_id").to_pylist()) == [i["object_id"] for i in items]

    response = client.post(SEARCH, json={"model_id": model_id, "query": "blue silk tie", "k": 3})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["hits"][0]["object_id"] == "item-12"  # "blue silk tie"
    assert len(result["hits"]) == 3 and result["hits"][0]["score"] > result["hits"][1]["score"]
    assert (result["model_id"], result["collection"], result["live"]) == (
        model_id, metrics["collection"], True)
    assert result["sink"] == {"type": "parquet", "name": "catalogue"}
