"""Bulk ingestion of sessions (`POST /clickstream/sessions:bulk`) and items, on every backend:
an outcome per row, a bad row refused on its own, idempotent replays."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from embtune.client import Client
from embtune.runtime import Runtime
from embtune.storage.clickstream_bulk_repo import StoredSession
from embtune.storage.db import utcnow
from embtune.storage.tables import ItemTombstoneRow

BULK = "/api/v1/clickstream/sessions:bulk"
SESSION = "/api/v1/clickstream/session"
BATCH = "/api/v1/clickstream/batch"


@pytest.fixture
def api(client_factory: Callable[..., TestClient]) -> TestClient:
    """No worker: these tests only ingest and read."""
    return client_factory(run_worker=False, bulk_max_rows=6, max_results_per_session=3)


def row(session_id: str, results: tuple[str, ...] = ("a", "b"), **extra: Any) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "search_query": "red shoes",
        "search_results": [{"object_id": o} for o in results],
        **extra,
    }


def bulk(client: TestClient, *rows: Any) -> dict[str, Any]:
    response = client.post(BULK, json={"sessions": list(rows)})
    assert response.status_code == 200, response.text
    return response.json()


def statuses(answer: dict[str, Any]) -> list[str]:
    return [r["status"] for r in answer["results"]]


def open_batch(client: TestClient) -> dict[str, Any]:
    return client.get(BATCH).json()[0]


def test_a_bad_row_is_refused_on_its_own_and_names_its_field(api: TestClient) -> None:
    answer = bulk(
        api,
        row("s1", clicks=["a"]),
        row("s2", clicks=["zz"]),  # not among its results
        {"session_id": "s3", "search_results": []},  # no query
        row("s4", results=("a", "b", "c", "d")),  # over max_results_per_session
        "not an object",
        {**row("s5", events=[{"event_id": "e5", "object_id": "b"}], user_id="u5",
               search_meta={"engine": "bm25"}, created_at="2024-05-01T10:00:00"),
         "search_results": [{"object_id": "a", "rank": 3, "meta": {"p": [1, "x"]}},
                            {"object_id": "b"}]},
    )
    assert (answer["accepted"], answer["rejected"]) == (2, 4)
    assert statuses(answer) == ["accepted", "rejected", "rejected", "rejected", "rejected",
                                "accepted"]
    results = answer["results"]
    assert [r["session_id"] for r in results] == ["s1", "s2", "s3", "s4", None, "s5"]
    assert results[1]["errors"][0]["loc"] == ["clicks", 0, "object_id"]
    assert results[1]["reason"].startswith("clicks.0.object_id: object 'zz' is not among")
    assert results[2]["errors"][0]["loc"] == ["search_query"]
    assert results[3]["errors"][0]["loc"] == ["search_results"]
    assert [r["new_events"] for r in results] == [1, 0, 0, 0, 0, 1]
    assert [e["event_id"] for e in api.get(f"{SESSION}/s1").json()["events"]] == ["s1-c0"]
    assert api.get(f"{SESSION}/s2").status_code == 404
    stored = api.get(f"{SESSION}/s5").json()
    assert (stored["user_id"], stored["search_meta"]) == ("u5", {"engine": "bm25"})
    assert stored["created_at"].startswith("2024-05-01T10:00:00")
    assert [(r["object_id"], r["rank"], r["meta"]) for r in stored["search_results"]] == [
        ("b", 2, None), ("a", 3, {"p": [1, "x"]})
    ]
    assert api.get(f"{SESSION}/s1").json()["search_meta"] is None
    assert (open_batch(api)["sessions_count"], open_batch(api)["clicks_count"]) == (2, 2)


def test_replaying_a_bulk_body_stores_nothing_twice(api: TestClient) -> None:
    rows = [row("s1", clicks=["a", "b"]), row("s2", irrelevant=True), row("s3", clicks=["zz"])]
    first = bulk(api, *rows)
    assert statuses(first) == ["accepted", "accepted", "rejected"]
    before = open_batch(api)
    again = bulk(api, *rows)
    assert statuses(again) == ["duplicate", "duplicate", "rejected"]
    assert [r["new_events"] for r in again["results"]] == [0, 0, 0]
    after = open_batch(api)
    assert before == after
    assert (after["sessions_count"], after["clicks_count"], after["irrelevant_count"]) == (2, 2, 1)


def test_a_session_posted_singly_is_a_duplicate_in_bulk_and_another_body_a_conflict(
    api: TestClient,
) -> None:
    assert api.post(SESSION, json=row("s1", user_id="u1")).status_code == 201
    answer = bulk(
        api,
        row("s1", user_id="u1", results=("a", "b")),  # same body (ranks default alike)
        row("s1", user_id="u2"),
        row("s2"),
        row("s2", results=("b",)),  # another body than an earlier row of this request
    )
    assert statuses(answer) == ["duplicate", "conflict", "accepted", "conflict"]
    assert answer["results"][1]["errors"][0]["loc"] == ["session_id"]
    assert "different body" in answer["results"][1]["reason"]
    assert "earlier in this request" in answer["results"][3]["reason"]
    assert api.get(f"{SESSION}/s1").json()["user_id"] == "u1"
    assert [r["object_id"] for r in api.get(f"{SESSION}/s2").json()["search_results"]] == [
        "a", "b"
    ]


def test_a_duplicate_row_records_only_new_events(api: TestClient) -> None:
    bulk(api, row("s1", clicks=["a"]), row("s2"))
    answer = bulk(
        api,
        row("s1", clicks=["a"], events=[{"event_id": "e1", "object_id": "b"}]),
        row("s2", events=[{"event_id": "e1", "object_id": "a"}]),  # e1 names another event
        row("s2", events=[{"event_id": "e2", "object_id": "b", "event_type": "cart"}]),
    )
    assert statuses(answer) == ["duplicate", "conflict", "duplicate"]
    assert [r["new_events"] for r in answer["results"]] == [1, 0, 1]
    assert answer["results"][1]["errors"][0]["loc"] == ["events", 0, "event_id"]
    events = {e["event_id"]: e["object_id"] for e in api.get(f"{SESSION}/s1").json()["events"]}
    assert events == {"s1-c0": "a", "e1": "b"}  # the click kept its id beside a new event
    assert [e["event_type"] for e in api.get(f"{SESSION}/s2").json()["events"]] == ["cart"]


def test_irrelevant_rows_exclude_clicks(api: TestClient) -> None:
    bulk(api, row("s1", clicks=["a"]), row("s2", irrelevant=True))
    answer = bulk(
        api,
        row("s3", clicks=["a"], irrelevant=True),
        row("s1", irrelevant=True),  # has a click already
        row("s2", clicks=["b"]),  # marked irrelevant already
        row("s4"),
        row("s4", irrelevant=True),  # marks the session the row before stored
    )
    assert statuses(answer) == ["rejected", "conflict", "conflict", "accepted", "duplicate"]
    assert [r["errors"][0]["loc"] for r in answer["results"][:3]] == [
        ["irrelevant"], ["irrelevant"], ["clicks", 0]
    ]
    assert api.get(f"{SESSION}/s1").json()["irrelevant"] is False
    assert api.get(f"{SESSION}/s4").json()["irrelevant"] is True
    assert bulk(api, row("s1", irrelevant=False))["results"][0]["status"] == "duplicate"


def test_events_for_a_released_batch_are_flagged_late(api: TestClient) -> None:
    bulk(api, row("s1", clicks=["a"]))
    released = api.post(f"{BATCH}/release").json()
    answer = bulk(api, row("s1", clicks=["a", "b"]), row("s2", clicks=["a"]))
    assert statuses(answer) == ["duplicate", "accepted"]
    assert [r["new_events"] for r in answer["results"]] == [1, 1]
    batch = api.get(f"{BATCH}/{released['id']}").json()
    assert (batch["clicks_count"], batch["late_events"]) == (2, 1)
    assert open_batch(api)["late_events"] == 0  # s2 joined the new open batch


def test_the_body_as_a_whole_is_refused_only_when_malformed_or_too_big(api: TestClient) -> None:
    too_many = api.post(BULK, json={"sessions": [row(f"s{i}") for i in range(7)]})
    assert too_many.status_code == 422
    assert [e["loc"] for e in too_many.json()["detail"]] == [["body", "sessions"]]
    assert api.post(BULK, json={"sessions": {"s1": row("s1")}}).status_code == 422
    assert api.post(BULK, json=[row("s1")]).status_code == 422
    assert api.post(BULK, json={"sessions": []}).status_code == 422
    assert api.get(BATCH).json() == []  # nothing stored


def test_the_client_reads_the_answer(api: TestClient) -> None:
    client = Client(str(api.base_url))  # the typed client over the app's own httpx client
    client._http.close()
    client._http = api
    result = client.ingest_sessions_bulk([row("s1", clicks=["a"]), row("s2", clicks=["x"])])
    assert (result.accepted, result.rejected) == (1, 1)
    assert result.results[0].new_events == 1
    assert result.results[1].errors is not None
    assert result.results[1].errors[0].loc == ["clicks", 0, "object_id"]


def test_overlapping_bodies_posted_at_once_store_each_session_once(api: TestClient) -> None:
    """The same new sessions in opposite orders, in two requests at once (a client retrying
    while its first try still runs): no dead-lock, each session accepted by one request."""
    rows = [row(f"s{i}", clicks=["a"]) for i in range(6)]
    for _ in range(3):
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda body: bulk(api, *body), [rows, rows[::-1]]))
        accepted = sorted(r["session_id"] for a in answers for r in a["results"]
                          if r["status"] == "accepted")
        assert accepted in ([], sorted(r["session_id"] for r in rows))
        assert all(s in ("accepted", "duplicate") for a in answers for s in statuses(a))
    assert open_batch(api)["sessions_count"] == open_batch(api)["clicks_count"] == 6


def test_a_session_stored_concurrently_is_planned_again(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session inserted by another request between our read and our insert: the insert
    skips it and the row is decided again against what that request stored."""
    bulk(api, row("s1"))
    runtime: Runtime = api.app.state.runtime
    repo = runtime.clickstream_bulk.bulk
    real = repo.lock_sessions
    reads: list[set[str]] = []

    def first_read_misses(session: Any, ids: Any) -> dict[str, StoredSession]:
        reads.append(set(ids))
        return {} if len(reads) == 1 else real(session, ids)

    monkeypatch.setattr(repo, "lock_sessions", first_read_misses)
    answer = bulk(api, row("s1", clicks=["a"]), row("s2", clicks=["b"]))
    assert statuses(answer) == ["duplicate", "accepted"]
    assert [r["new_events"] for r in answer["results"]] == [1, 1]
    assert reads == [{"s1", "s2"}, {"s1"}]
    assert [e["object_id"] for e in api.get(f"{SESSION}/s1").json()["events"]] == ["a"]


# -- items --------------------------------------------------------------------------------------
def test_items_bulk_stores_the_good_rows_and_lifts_tombstones(api: TestClient) -> None:
    runtime: Runtime = api.app.state.runtime
    with runtime.db.transaction() as session:
        session.add(ItemTombstoneRow(object_id="b", deleted_at=utcnow()))
    rows: list[Any] = [
        {"object_id": "a", "text": "alpha"},
        {"object_id": "b", "text": "beta", "meta": {"x": 1}},
        {"object_id": "c"},
        {"object_id": "d", "text": "delta", "colour": "red"},
        7,
    ]
    with runtime.db.transaction() as session:
        first = runtime.items_bulk.ingest_in(session, rows, utcnow())
    assert [o.status for o in first] == ["accepted", "accepted", "rejected", "rejected",
                                         "rejected"]
    assert [o.key for o in first] == ["a", "b", "c", "d", None]
    assert first[2].reason == "text: Field required"
    assert first[3].errors[0]["loc"] == ["colour"]
    with runtime.db.read() as session:
        assert session.get(ItemTombstoneRow, "b") is None
    created = api.get("/api/v1/items/b").json()["created_at"]
    changed = [{"object_id": "a", "text": "alpha"}, {"object_id": "b", "text": "beta 2"}]
    with runtime.db.transaction() as session:
        again = runtime.items_bulk.ingest_in(session, changed, utcnow())
    assert [o.status for o in again] == ["duplicate", "accepted"]
    item = api.get("/api/v1/items/b").json()
    assert (item["text"], item["meta"], item["created_at"]) == ("beta 2", None, created)
    assert item["updated_at"] > created
