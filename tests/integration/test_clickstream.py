"""Catalogue, clickstream ingestion and batches on every backend."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from embtune.clickstream.sessions import SearchSession
from embtune.errors import Conflict, NotFound
from embtune.services.clickstream import ClickstreamService

ITEMS = "/api/v1/items"
SESSION = "/api/v1/clickstream/session"
EVENTS = "/api/v1/clickstream/session/events"
IRRELEVANT = "/api/v1/clickstream/session/irrelevant"
BATCH = "/api/v1/clickstream/batch"
RELEASE = "/api/v1/clickstream/batch/release"

# Small bounds, so each one is cheap to exceed.
BOUNDS = {
    "max_query_length": 20,
    "max_results_per_session": 3,
    "max_events_per_push": 2,
    "max_item_text_length": 10,
}


@pytest.fixture
def api(client_factory: Callable[..., TestClient]) -> TestClient:
    """No worker: these tests only ingest and read."""
    return client_factory(run_worker=False, **BOUNDS)


def service(client: TestClient) -> ClickstreamService:
    return client.app.state.runtime.clickstream


def post_session(
    client: TestClient, session_id: str, results: list[str], query: str = "red shoes", **extra: Any
) -> dict[str, Any]:
    body = {
        "session_id": session_id,
        "search_query": query,
        "search_results": [{"object_id": o} for o in results],
        **extra,
    }
    response = client.post(SESSION, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


def click(client: TestClient, session_id: str, *pairs: tuple[str, str]) -> Any:
    events = [{"event_id": e, "object_id": o} for e, o in pairs]
    return client.post(EVENTS, json={"session_id": session_id, "events": events})


def error_locs(response: Any) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [e["loc"] for e in response.json()["detail"]]


# -- items ------------------------------------------------------------------------------------
def test_items_upsert_counts_inserts_and_updates(api: TestClient) -> None:
    first = api.post(ITEMS, json={"items": [{"object_id": "a", "text": "alpha"},
                                            {"object_id": "b/1", "text": "beta"}]})
    assert first.json() == {"inserted": 2, "updated": 0}
    second = api.post(ITEMS, json={"items": [
        {"object_id": "a", "text": "alpha 2", "meta": {"x": 1}}, {"object_id": "c", "text": "gamma"}
    ]})
    assert second.json() == {"inserted": 1, "updated": 1}
    item = api.get(f"{ITEMS}/a").json()
    assert (item["text"], item["meta"]) == ("alpha 2", {"x": 1})
    assert api.get(f"{ITEMS}/b/1").json()["text"] == "beta"  # ids may contain "/"
    assert api.get(f"{ITEMS}/nope").status_code == 404
    page = api.get(ITEMS, params={"limit": 2, "offset": 1})
    assert page.headers["X-Total-Count"] == "3"
    assert [i["object_id"] for i in page.json()] == ["b/1", "c"]


def test_items_request_bounds_name_the_field(api: TestClient) -> None:
    assert error_locs(api.post(ITEMS, json={"items": []})) == [["body", "items"]]
    many = [{"object_id": str(i), "text": "t"} for i in range(1001)]
    assert error_locs(api.post(ITEMS, json={"items": many})) == [["body", "items"]]
    long_text = [{"object_id": "a", "text": "ok"}, {"object_id": "b", "text": "x" * 11}]
    assert error_locs(api.post(ITEMS, json={"items": long_text})) == [["body", "items", 1, "text"]]
    twice = [{"object_id": "a", "text": "1"}, {"object_id": "a", "text": "2"}]
    assert error_locs(api.post(ITEMS, json={"items": twice})) == [
        ["body", "items", 1, "object_id"]
    ]
    extra = [{"object_id": "a", "text": "1", "colour": "red"}]
    assert error_locs(api.post(ITEMS, json={"items": extra})) == [["body", "items", 0, "colour"]]
    assert api.get(ITEMS).headers["X-Total-Count"] == "0"


# -- sessions ---------------------------------------------------------------------------------
def test_session_is_stored_with_default_ranks_and_joins_the_open_batch(api: TestClient) -> None:
    created = api.post(SESSION, json={
        "session_id": "s1",
        "search_query": "red shoes",
        "search_results": [{"object_id": "a"}, {"object_id": "b", "rank": 7, "meta": {"p": 1}}],
        "user_id": "u1",
        "created_at": "2024-05-01T10:00:00",
        "search_meta": {"engine": "bm25"},
    })
    assert created.status_code == 201
    session = api.get(f"{SESSION}/s1").json()
    assert session == created.json()
    assert [(r["object_id"], r["rank"]) for r in session["search_results"]] == [("a", 1), ("b", 7)]
    assert session["created_at"].startswith("2024-05-01T10:00:00")
    assert session["irrelevant"] is False and session["events"] == []
    batch = api.get(f"{BATCH}/{session['batch_id']}").json()
    assert (batch["status"], batch["sessions_count"]) == ("open", 1)
    assert api.get(f"{SESSION}/unknown").status_code == 404


def test_reposting_a_session_is_harmless_but_another_body_is_409(api: TestClient) -> None:
    first = post_session(api, "s1", ["a", "b"])
    again = api.post(SESSION, json={"session_id": "s1", "search_query": "red shoes",
                                    "search_results": [{"object_id": "a"}, {"object_id": "b"}]})
    assert again.status_code == 200
    assert again.json() == first
    # explicit ranks equal to the defaults are the same body
    same = api.post(SESSION, json={"session_id": "s1", "search_query": "red shoes",
                                   "search_results": [{"object_id": "a", "rank": 1},
                                                      {"object_id": "b", "rank": 2}]})
    assert same.status_code == 200
    other = api.post(SESSION, json={"session_id": "s1", "search_query": "blue shoes",
                                    "search_results": [{"object_id": "a"}]})
    assert other.status_code == 409
    assert "s1" in other.json()["detail"]
    assert api.get(f"{SESSION}/s1").json()["search_query"] == "red shoes"


def test_session_bounds_and_duplicates_name_the_field(api: TestClient) -> None:
    def post(**body: Any) -> Any:
        return api.post(SESSION, json={"session_id": "s", "search_query": "q",
                                       "search_results": [], **body})

    assert error_locs(post(search_query="q" * 21)) == [["body", "search_query"]]
    four = [{"object_id": o} for o in "abcd"]
    assert error_locs(post(search_results=four)) == [["body", "search_results"]]
    duplicated = [{"object_id": "a"}, {"object_id": "b"}, {"object_id": "a"}]
    assert error_locs(post(search_results=duplicated)) == [
        ["body", "search_results", 2, "object_id"]
    ]
    assert error_locs(post(search_results=[{"object_id": "a", "rank": 0}])) == [
        ["body", "search_results", 0, "rank"]
    ]
    assert error_locs(post(session_id="")) == [["body", "session_id"]]
    assert api.get(f"{SESSION}/s").status_code == 404
    assert api.get(BATCH).json() == []  # nothing stored, not even an open batch


# -- events -----------------------------------------------------------------------------------
def test_event_pushes_are_idempotent_by_event_id(api: TestClient) -> None:
    post_session(api, "s1", ["a", "b", "c"])
    first = click(api, "s1", ("e1", "b"), ("e2", "c"))
    assert first.json() == {"session_id": "s1", "received": 2, "new": 2}
    repeat = click(api, "s1", ("e2", "c"), ("e3", "b"))
    assert repeat.json() == {"session_id": "s1", "received": 2, "new": 1}
    events = api.get(f"{SESSION}/s1").json()["events"]
    assert [(e["event_id"], e["object_id"], e["event_type"]) for e in events] == [
        ("e1", "b", "click"), ("e2", "c", "click"), ("e3", "b", "click")
    ]
    reused = click(api, "s1", ("e1", "a"))  # same id, another object: a client bug, not a repeat
    assert reused.status_code == 409


def test_rejected_event_pushes_store_nothing(api: TestClient) -> None:
    post_session(api, "s1", ["a", "b"])
    assert click(api, "nope", ("e1", "a")).status_code == 404
    foreign = click(api, "s1", ("e1", "a"), ("e2", "zzz"))
    assert error_locs(foreign) == [["body", "events", 1, "object_id"]]
    assert "zzz" in foreign.json()["detail"][0]["msg"]
    too_many = click(api, "s1", ("e1", "a"), ("e2", "b"), ("e3", "a"))
    assert error_locs(too_many) == [["body", "events"]]
    assert api.get(f"{SESSION}/s1").json()["events"] == []
    assert click(api, "s1", ("e1", "a")).json()["new"] == 1  # e1 was never stored


def test_irrelevant_mark_is_idempotent_and_counted(api: TestClient) -> None:
    post_session(api, "s1", ["a"])
    post_session(api, "s2", ["a"])
    assert api.post(IRRELEVANT, json={"session_id": "s1"}).json()["irrelevant"] is True
    assert api.post(IRRELEVANT, json={"session_id": "s1"}).status_code == 200
    assert api.post(IRRELEVANT, json={"session_id": "nope"}).status_code == 404
    batch = api.get(BATCH).json()[0]
    assert (batch["sessions_count"], batch["irrelevant_count"]) == (2, 1)


# -- batches ----------------------------------------------------------------------------------
def test_release_freezes_the_batch_and_opens_a_new_one(api: TestClient) -> None:
    assert api.post(RELEASE).status_code == 409  # no batch yet
    post_session(api, "s1", ["a", "b"])
    post_session(api, "s2", ["a", "b"])
    click(api, "s1", ("e1", "a"), ("e2", "b"))
    click(api, "s1", ("e3", "b"))
    api.post(IRRELEVANT, json={"session_id": "s2"})
    event = api.post(EVENTS, json={"session_id": "s2", "events": [
        {"event_id": "v1", "object_id": "a", "event_type": "view"}]})
    assert event.status_code == 200  # a view contradicts nothing

    released = api.post(RELEASE)
    assert released.status_code == 200, released.text
    batch = released.json()
    assert batch["status"] == "released" and batch["released_at"]
    assert (batch["sessions_count"], batch["clicks_count"], batch["irrelevant_count"]) == (2, 3, 1)
    assert (batch["late_events"], batch["task_ids"]) == (0, [])
    assert api.get(f"{BATCH}/{batch['id']}").json() == batch
    assert api.post(RELEASE).status_code == 409  # the new open batch is empty

    late = post_session(api, "s3", ["a"])
    assert late["batch_id"] != batch["id"]
    listed = api.get(BATCH)
    assert listed.headers["X-Total-Count"] == "2"
    assert [b["id"] for b in listed.json()] == [late["batch_id"], batch["id"]]  # newest first
    assert api.get(f"{BATCH}/nope").status_code == 404

    # a released batch takes no new session, and its repeats stay harmless
    assert click(api, "s1", ("e1", "a")).json()["new"] == 0
    assert api.get(f"{BATCH}/{batch['id']}").json() == batch


def test_training_data_gives_sessions_and_item_texts(api: TestClient) -> None:
    api.post(ITEMS, json={"items": [{"object_id": o, "text": f"text {o}"} for o in "abcd"]})
    ranked = [{"object_id": "c", "rank": 3}, {"object_id": "a", "rank": 1},
              {"object_id": "b", "rank": 2}]
    api.post(SESSION, json={"session_id": "s1", "search_query": "q1", "search_results": ranked})
    post_session(api, "s2", ["d", "a"], query="q2")
    post_session(api, "s0", ["a"], query="q0")
    pushes = [  # pushed out of order: clicks are ordered by their time, then arrival
        [{"event_id": "e3", "object_id": "c", "created_at": "2024-01-01T00:00:03Z"},
         {"event_id": "e4", "object_id": "b", "event_type": "view"}],
        [{"event_id": "e1", "object_id": "c", "created_at": "2024-01-01T00:00:01Z"},
         {"event_id": "e2", "object_id": "a", "created_at": "2024-01-01T00:00:02Z"}],
    ]
    for events in pushes:
        pushed = api.post(EVENTS, json={"session_id": "s1", "events": events})
        assert pushed.status_code == 200, pushed.text
    api.post(IRRELEVANT, json={"session_id": "s2"})

    clickstream = service(api)
    batch_id = clickstream.release_open_batch()
    assert batch_id is not None
    assert clickstream.release_open_batch() is None  # the new open batch is empty
    data = clickstream.training_data(batch_id)
    assert data.batch_id == batch_id
    assert data.sessions() == [
        SearchSession("s0", "q0", ("a",), ()),
        SearchSession("s1", "q1", ("a", "b", "c"), ("c", "a")),
        SearchSession("s2", "q2", ("d", "a"), (), irrelevant=True),
    ]
    assert data.item_texts(["a", "zzz", "c"]) == {"a": "text a", "c": "text c"}
    assert data.item_texts() == {o: f"text {o}" for o in "abcd"}
    with pytest.raises(NotFound):
        clickstream.training_data("nope")


def test_concurrent_releases_and_ingests_never_lose_or_share_a_session(api: TestClient) -> None:
    ingesters, per_ingester, releasers = 8, 12, 8
    posted: dict[str, str] = {}  # session id -> batch id it was stored in
    released: list[dict[str, Any]] = []
    lock = threading.Lock()
    start = threading.Barrier(ingesters + releasers)

    def ingest(worker: int) -> None:
        start.wait()
        for n in range(per_ingester):
            session = post_session(api, f"w{worker}-{n}", ["a", "b"])
            with lock:
                posted[session["session_id"]] = session["batch_id"]

    def release(_: int) -> None:
        start.wait()
        for _ in range(6):
            response = api.post(RELEASE)
            assert response.status_code in (200, 409), response.text
            if response.status_code == 200:
                with lock:
                    released.append(response.json())

    with ThreadPoolExecutor(max_workers=ingesters + releasers) as pool:
        futures = [pool.submit(ingest, w) for w in range(ingesters)]
        futures += [pool.submit(release, r) for r in range(releasers)]
        for future in futures:
            future.result()
    final = api.post(RELEASE)
    if final.status_code == 200:
        released.append(final.json())

    assert len(posted) == ingesters * per_ingester
    released_ids = [b["id"] for b in released]
    assert len(released_ids) == len(set(released_ids)) >= 2
    stored = {sid: api.get(f"{SESSION}/{sid}").json()["batch_id"] for sid in posted}
    assert stored == posted  # no session moved after it was stored
    per_batch = Counter(stored.values())
    assert set(per_batch) == set(released_ids)  # every session is in a released batch
    for batch in released:
        # counts read under the release lock equal the final ones: nothing joined afterwards
        assert batch["sessions_count"] == per_batch[batch["id"]]
        assert api.get(f"{BATCH}/{batch['id']}").json()["sessions_count"] == batch["sessions_count"]
    assert sum(b["sessions_count"] for b in released) == len(posted)
    batches = api.get(BATCH, params={"limit": 1000}).json()
    open_batches = [b for b in batches if b["status"] == "open"]
    assert len(open_batches) == 1 and open_batches[0]["sessions_count"] == 0


# -- late events and irrelevant marks ---------------------------------------------------------
def test_late_events_join_their_session_and_are_counted(api: TestClient) -> None:
    post_session(api, "s1", ["a", "b"])
    post_session(api, "s2", ["a", "b"])
    assert click(api, "s1", ("e1", "a")).status_code == 200
    clickstream = service(api)
    batch_id = clickstream.release_open_batch()
    assert batch_id is not None
    data = clickstream.training_data(batch_id)
    assert [s.clicks for s in data.sessions()] == [("a",), ()]  # what a first run reads

    late = click(api, "s2", ("late-1", "b"), ("late-2", "a"))
    assert late.status_code == 200, late.text
    assert late.json() == {"session_id": "s2", "received": 2, "new": 2}
    assert click(api, "s2", ("late-1", "b")).json()["new"] == 0  # a repeat stays harmless
    assert click(api, "s2", ("late-1", "a")).status_code == 409  # a reused id stays a conflict
    stored = api.get(f"{SESSION}/s2").json()
    assert stored["batch_id"] == batch_id  # with the session, not in the next batch
    assert [e["event_id"] for e in stored["events"]] == ["late-1", "late-2"]

    batch = api.get(f"{BATCH}/{batch_id}").json()
    assert (batch["status"], batch["clicks_count"], batch["late_events"]) == ("released", 3, 2)
    assert api.get(BATCH).json()[1]["late_events"] == 2  # the listing counts them too
    # a run that reads the batch now trains on the late clicks
    assert [s.clicks for s in data.sessions()] == [("a",), ("b", "a")]
    assert api.post(RELEASE).status_code == 409  # nothing went into the open batch


def test_irrelevant_contradicts_a_click_both_ways(api: TestClient) -> None:
    post_session(api, "clicked", ["a", "b"])
    post_session(api, "empty", ["a", "b"])
    click(api, "clicked", ("e1", "a"))
    refused = api.post(IRRELEVANT, json={"session_id": "clicked"})
    assert refused.status_code == 409
    assert "clicked" in refused.json()["detail"] and "click" in refused.json()["detail"]
    assert api.get(f"{SESSION}/clicked").json()["irrelevant"] is False

    assert api.post(IRRELEVANT, json={"session_id": "empty"}).json()["irrelevant"] is True
    assert api.post(IRRELEVANT, json={"session_id": "empty"}).status_code == 200  # idempotent
    refused = click(api, "empty", ("e2", "a"), ("e3", "b"))
    assert refused.status_code == 409
    assert "irrelevant" in refused.json()["detail"] and "empty" in refused.json()["detail"]
    view = api.post(EVENTS, json={"session_id": "empty", "events": [
        {"event_id": "v1", "object_id": "a", "event_type": "view"}]})
    assert view.status_code == 200  # only a click contradicts the mark
    assert [e["event_id"] for e in api.get(f"{SESSION}/empty").json()["events"]] == ["v1"]
    batch = api.get(BATCH).json()[0]
    assert (batch["clicks_count"], batch["irrelevant_count"]) == (1, 1)


def test_a_released_batch_session_can_still_be_marked_irrelevant(api: TestClient) -> None:
    post_session(api, "s1", ["a"])
    post_session(api, "s2", ["a"])
    click(api, "s1", ("e1", "a"))
    released = api.post(RELEASE).json()
    assert api.post(IRRELEVANT, json={"session_id": "s2"}).json()["irrelevant"] is True
    assert api.post(IRRELEVANT, json={"session_id": "s1"}).status_code == 409  # has a click
    batch = api.get(f"{BATCH}/{released['id']}").json()
    assert (batch["irrelevant_count"], batch["clicks_count"]) == (1, 1)
    sessions = service(api).training_data(released["id"]).sessions()
    assert [(s.session_id, s.irrelevant) for s in sessions] == [("s1", False), ("s2", True)]


def test_a_click_and_an_irrelevant_mark_racing_never_both_win(api: TestClient) -> None:
    """The session row lock serializes the two checks: whichever commits first wins, the other
    is a 409 — never a session both clicked and irrelevant."""
    clickstream = service(api)
    rounds = 8
    for n in range(rounds):
        post_session(api, f"r{n}", ["a"])

    def attempt(n: int) -> tuple[bool, bool]:
        start = threading.Barrier(2)

        def mark() -> bool:
            start.wait()
            try:
                clickstream.mark_irrelevant(f"r{n}")
            except Conflict:
                return False
            return True

        def push() -> bool:
            start.wait()
            try:
                clickstream.push_events(f"r{n}", [{"event_id": f"r{n}-c", "object_id": "a"}])
            except Conflict:
                return False
            return True

        with ThreadPoolExecutor(2) as pool:
            marked, clicked = pool.submit(mark), pool.submit(push)
            return marked.result(), clicked.result()

    outcomes = [attempt(n) for n in range(rounds)]
    assert all(marked != clicked for marked, clicked in outcomes), outcomes
    for n, (marked, clicked) in enumerate(outcomes):
        stored = clickstream.session(f"r{n}")
        assert (stored.irrelevant, len(stored.events)) == (marked, int(clicked))
