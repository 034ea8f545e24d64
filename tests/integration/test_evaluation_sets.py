"""Judged evaluation sets over HTTP: stored whole or not at all, refused with a 422 that names
the bad field, never changed afterwards; and a model's default set."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from embtune.errors import Conflict, InvalidParams
from tests.conftest import register_model


@pytest.fixture
def client(client_factory: Callable[..., TestClient]) -> TestClient:
    """No task runs here: an app without its in-process worker starts and stops in a fraction
    of the time."""
    return client_factory(run_worker=False)


SETS = "/api/v1/evaluation-sets"
MODELS = "/api/v1/embedding-models"


@pytest.fixture
def catalogue(client: TestClient) -> TestClient:
    items = [{"object_id": f"doc{i}", "text": f"document {i}"} for i in range(10)]
    items.append({"object_id": "shelf/1", "text": "an id with a slash"})
    assert client.post("/api/v1/items", json={"items": items}).status_code == 200
    return client


def query(query_id: str, *relevant: tuple[str, int]) -> dict[str, Any]:
    return {
        "query_id": query_id,
        "text": f"text of {query_id}",
        "relevant": [{"object_id": oid, "grade": grade} for oid, grade in relevant],
    }


def body(name: str = "golden", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "queries": [
            query("q1", ("doc1", 2), ("doc2", 1), ("doc3", 0)),
            query("q0", ("shelf/1", 1)),
        ],
        **extra,
    }


def stored_sets(client: TestClient) -> list[dict[str, Any]]:
    response = client.get(SETS)
    assert response.status_code == 200
    return response.json()


def refused(client: TestClient, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The 422's field errors; and nothing was stored."""
    before = stored_sets(client)
    response = client.post(SETS, json=payload)
    assert response.status_code == 422, response.text
    assert stored_sets(client) == before
    return response.json()["detail"]


def locs(errors: list[dict[str, Any]]) -> list[list[Any]]:
    return [e["loc"] for e in errors]


def test_a_set_is_created_listed_and_read_by_id_or_name(catalogue: TestClient) -> None:
    response = catalogue.post(SETS, json=body(description="hand-judged"))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["name"] == "golden" and created["description"] == "hand-judged"
    assert (created["queries_count"], created["judgements_count"]) == (2, 4)
    assert "queries" not in created
    second = catalogue.post(SETS, json=body("silver")).json()

    response = catalogue.get(SETS, params={"limit": 1})
    assert response.headers["X-Total-Count"] == "2"
    assert [s["id"] for s in response.json()] == [second["id"]]  # newest first
    assert [s["id"] for s in stored_sets(catalogue)] == [second["id"], created["id"]]

    for key in (created["id"], "golden"):
        one = catalogue.get(f"{SETS}/{key}").json()
        assert one["id"] == created["id"] and one["queries"] is None
    full = catalogue.get(f"{SETS}/golden", params={"include_queries": "true"}).json()
    assert full["queries"] == [  # posted order; best grade first
        {"query_id": "q1", "text": "text of q1", "relevant": [
            {"object_id": "doc1", "grade": 2}, {"object_id": "doc2", "grade": 1},
            {"object_id": "doc3", "grade": 0}]},
        {"query_id": "q0", "text": "text of q0",
         "relevant": [{"object_id": "shelf/1", "grade": 1}]},
    ]
    page = catalogue.get(f"{SETS}/golden/queries", params={"offset": 1, "limit": 5})
    assert page.headers["X-Total-Count"] == "2"
    assert [q["query_id"] for q in page.json()] == ["q0"]
    assert catalogue.get(f"{SETS}/nope").status_code == 404
    assert catalogue.get(f"{SETS}/nope/queries").status_code == 404


def test_grade_defaults_to_one(catalogue: TestClient) -> None:
    payload = {"name": "plain", "queries": [
        {"query_id": "q", "text": "t", "relevant": [{"object_id": "doc1"}]}]}
    assert catalogue.post(SETS, json=payload).status_code == 201
    full = catalogue.get(f"{SETS}/plain", params={"include_queries": True}).json()
    assert full["queries"][0]["relevant"] == [{"object_id": "doc1", "grade": 1}]


def test_unknown_items_are_named_and_nothing_is_stored(catalogue: TestClient) -> None:
    payload = body()
    payload["queries"][0]["relevant"].append({"object_id": "ghost", "grade": 1})
    payload["queries"][1]["relevant"].insert(0, {"object_id": "doc99", "grade": 3})
    errors = refused(catalogue, payload)
    assert locs(errors) == [
        ["body", "queries", 0, "relevant", 3, "object_id"],
        ["body", "queries", 1, "relevant", 0, "object_id"],
    ]
    assert "'ghost'" in errors[0]["msg"] and "catalogue" in errors[0]["msg"]
    # the set's name stays free
    assert catalogue.post(SETS, json=body()).status_code == 201


def test_many_unknown_items_list_only_the_first_few(catalogue: TestClient) -> None:
    payload = {"name": "ghosts", "queries": [
        query(f"q{i}", (f"ghost{i}", 1)) for i in range(500)]}
    errors = refused(catalogue, payload)
    assert 0 < len(errors) <= 20
    assert errors[0]["loc"] == ["body", "queries", 0, "relevant", 0, "object_id"]


def test_duplicate_query_ids_and_items_are_refused(catalogue: TestClient) -> None:
    payload = body()
    payload["queries"].append(query("q1", ("doc4", 1)))
    payload["queries"][1]["relevant"].append({"object_id": "shelf/1", "grade": 2})
    errors = refused(catalogue, payload)
    assert locs(errors) == [
        ["body", "queries", 1, "relevant", 1, "object_id"],
        ["body", "queries", 2, "query_id"],
    ]
    assert "duplicate" in errors[0]["msg"] and "duplicate" in errors[1]["msg"]


@pytest.mark.parametrize("grade", [-1, 101, 1.5, "high", None])
def test_grades_are_integers_from_0_to_100(catalogue: TestClient, grade: Any) -> None:
    payload = body()
    payload["queries"][0]["relevant"][1]["grade"] = grade
    assert locs(refused(catalogue, payload)) == [["body", "queries", 0, "relevant", 1, "grade"]]


def test_a_query_needs_a_relevant_item(catalogue: TestClient) -> None:
    payload = body()
    payload["queries"][1] = query("q0", ("doc5", 0), ("doc6", 0))
    errors = refused(catalogue, payload)
    assert locs(errors) == [["body", "queries", 1, "relevant"]]
    payload["queries"][1]["relevant"] = []
    assert locs(refused(catalogue, payload)) == [["body", "queries", 1, "relevant"]]
    assert locs(refused(catalogue, {"name": "empty", "queries": []})) == [["body", "queries"]]


@pytest.mark.parametrize("name", ["a b", "../x", "é", "", "-lead", "x" * 101, "a/b", "a\x00"])
def test_set_names_are_short_and_plain(catalogue: TestClient, name: str) -> None:
    assert locs(refused(catalogue, body(name))) == [["body", "name"]]


def test_a_taken_name_is_a_conflict_and_the_first_set_is_unchanged(
    catalogue: TestClient,
) -> None:
    first = catalogue.post(SETS, json=body()).json()
    other = {"name": "golden", "queries": [query("z", ("doc9", 5))]}
    response = catalogue.post(SETS, json=other)
    assert response.status_code == 409
    assert response.json()["detail"] == f"evaluation set name 'golden' exists (id {first['id']})"
    assert stored_sets(catalogue) == [first]
    full = catalogue.get(f"{SETS}/golden", params={"include_queries": True}).json()
    assert [q["query_id"] for q in full["queries"]] == ["q1", "q0"]


def test_sets_are_immutable(catalogue: TestClient) -> None:
    created = catalogue.post(SETS, json=body()).json()
    before = catalogue.get(f"{SETS}/{created['id']}", params={"include_queries": True}).json()
    for method in ("PUT", "PATCH", "DELETE"):
        response = catalogue.request(method, f"{SETS}/{created['id']}", json=body("golden"))
        assert response.status_code == 405, (method, response.text)
    assert catalogue.delete(SETS).status_code == 405
    assert catalogue.get(f"{SETS}/{created['id']}", params={"include_queries": True}).json() \
        == before


def test_a_model_default_set_is_set_by_id_or_name_and_cleared(catalogue: TestClient) -> None:
    created = catalogue.post(SETS, json=body()).json()
    model_id = register_model(catalogue)
    assert catalogue.get(f"{MODELS}/{model_id}").json()["evaluation_set_id"] is None
    url = f"{MODELS}/{model_id}/evaluation-set"

    for key in ("golden", created["id"]):
        response = catalogue.put(url, json={"evaluation_set_id": key})
        assert response.status_code == 200, response.text
        assert response.json()["evaluation_set_id"] == created["id"]
        assert catalogue.get(f"{MODELS}/{model_id}").json()["evaluation_set_id"] == created["id"]

    missing = catalogue.put(url, json={"evaluation_set_id": "nope"})
    assert missing.status_code == 404
    assert missing.json()["detail"].startswith("evaluation_set_id:")
    assert catalogue.get(f"{MODELS}/{model_id}").json()["evaluation_set_id"] == created["id"]
    unknown_model = catalogue.put(f"{MODELS}/nope/evaluation-set",
                                  json={"evaluation_set_id": "golden"})
    assert unknown_model.status_code == 404 and "embedding model" in unknown_model.json()["detail"]
    assert catalogue.put(url, json={}).status_code == 422  # null clears; absent is a mistake

    cleared = catalogue.put(url, json={"evaluation_set_id": None})
    assert cleared.status_code == 200 and cleared.json()["evaluation_set_id"] is None


def test_a_model_registers_with_a_default_set(catalogue: TestClient) -> None:
    created = catalogue.post(SETS, json=body()).json()
    registration = {"name": "m", "plugin_name": "sleepy", "source": "builtin:all-MiniLM-L6-v2"}
    response = catalogue.post(MODELS, json={**registration, "evaluation_set_id": "golden"})
    assert response.status_code == 201, response.text
    assert response.json()["evaluation_set_id"] == created["id"]

    before = catalogue.get(MODELS).json()
    response = catalogue.post(MODELS, json={**registration, "evaluation_set_id": "nope"})
    assert response.status_code == 404
    assert response.json()["detail"] == "evaluation_set_id: evaluation set 'nope' not found"
    assert catalogue.get(MODELS).json() == before


def test_a_set_of_100k_judgements_is_stored_and_read_back_whole(client: TestClient) -> None:
    """More rows than one statement may bind on SQLite, and several chunks on each database."""
    for start in (0, 1000):
        items = [{"object_id": f"d{i}", "text": "t"} for i in range(start, start + 1000)]
        assert client.post("/api/v1/items", json={"items": items}).status_code == 200
    queries = [
        {"query_id": f"q{i}", "text": f"query {i}",
         "relevant": [{"object_id": f"d{(i * 7 + j) % 2000}", "grade": j % 3}
                      for j in range(10)]}
        for i in range(10_001)
    ]
    response = client.post(SETS, json={"name": "large", "queries": queries})
    assert response.status_code == 201, response.text[:500]
    assert (response.json()["queries_count"], response.json()["judgements_count"]) \
        == (10_001, 100_010)
    judged = client.app.state.runtime.evaluation_sets.judged("large")  # type: ignore[attr-defined]
    assert list(judged.queries) == [q["query_id"] for q in queries]
    assert judged.grades["q9999"] == {
        j["object_id"]: j["grade"] for j in queries[9999]["relevant"]
    }
    assert sum(len(g) for g in judged.grades.values()) == 100_010
    too_many = client.get(f"{SETS}/large", params={"include_queries": True})
    assert too_many.status_code == 400 and "embtune evalset export" in too_many.json()["detail"]
    page = client.get(f"{SETS}/large/queries", params={"offset": 10_000, "limit": 1000})
    assert [q["query_id"] for q in page.json()] == ["q10000"]
    assert judged.relevant()["q0"] == {"d1", "d2", "d4", "d5", "d7", "d8"}


def test_the_service_refuses_a_name_python_regex_would_pass(client: TestClient) -> None:
    """The wire schema refuses it first; the service, which others call directly, too."""
    service = client.app.state.runtime.evaluation_sets  # type: ignore[attr-defined]
    with pytest.raises(InvalidParams) as refusal:
        service.create("golden\n", None, [])
    assert [e["loc"] for e in refusal.value.errors] == [["body", "name"], ["body", "queries"]]


def test_two_writers_of_one_name_store_one_set(catalogue: TestClient) -> None:
    service = catalogue.app.state.runtime.evaluation_sets  # type: ignore[attr-defined]
    queries = [query(f"q{i}", ("doc1", 1), ("doc2", 2)) for i in range(2000)]
    start = threading.Barrier(2)
    outcomes: list[Any] = []

    def write() -> None:
        start.wait()
        try:
            outcomes.append(service.create("raced", None, queries))
        except Conflict as exc:
            outcomes.append(exc)

    writers = [threading.Thread(target=write) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    stored = [o for o in outcomes if not isinstance(o, Conflict)]
    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(stored) == 1 and len(refused) == 1
    assert refused[0].detail == f"evaluation set name 'raced' exists (id {stored[0].id})"
    assert [s["id"] for s in stored_sets(catalogue)] == [stored[0].id]
    assert stored[0].judgements_count == 4000
