"""Erasing a user: every session with its results and events goes, on every backend; other
users keep theirs; the audit trail records the counts and the caller, never the user id."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from embtune.runtime import Runtime
from embtune.storage.tables import ClickEventRow, SearchSessionRow, SessionResultRow

USERS = "/api/v1/clickstream/users"
ERASED = "u/erase me"  # a "/" and a blank: the path carries any id


def post_session(client: TestClient, sid: str, user: str, clicks: int = 1) -> None:
    body = {"session_id": sid, "search_query": f"secret query of {sid}", "user_id": user,
            "search_results": [{"object_id": o} for o in ("a", "b", "c")]}
    assert client.post("/api/v1/clickstream/session", json=body).status_code == 201
    events = [{"event_id": f"{sid}-{n}", "object_id": "abc"[n]} for n in range(clicks)]
    if events:
        pushed = client.post("/api/v1/clickstream/session/events",
                             json={"session_id": sid, "events": events})
        assert pushed.status_code == 200


def stored(rt: Runtime, user: str) -> tuple[int, int, int]:
    """(sessions, results, events) stored for the user."""
    of_user = select(SearchSessionRow.session_id).where(SearchSessionRow.user_id == user)
    with rt.db.read() as session:
        return (
            session.scalar(select(func.count()).select_from(of_user.subquery())) or 0,
            session.scalar(select(func.count()).select_from(SessionResultRow)
                           .where(SessionResultRow.session_id.in_(of_user))) or 0,
            session.scalar(select(func.count()).select_from(ClickEventRow)
                           .where(ClickEventRow.session_id.in_(of_user))) or 0,
        )


def test_erasing_a_user_leaves_nothing_of_theirs_and_everything_of_others(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(run_worker=False, retention_chunk_sessions=2)
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    post_session(client, "e1", ERASED, clicks=2)
    post_session(client, "k1", "keep")
    assert client.post("/api/v1/clickstream/batch/release").status_code == 200
    post_session(client, "e2", ERASED)
    post_session(client, "e3", ERASED, clicks=0)
    post_session(client, "k2", "keep", clicks=3)

    erased = client.delete(f"{USERS}/{ERASED}")

    assert erased.status_code == 200, erased.text
    assert erased.json() == {"sessions": 3, "results": 9, "events": 3}
    assert stored(rt, ERASED) == (0, 0, 0)
    with rt.db.read() as session:  # results have no foreign key to sessions: none left over
        assert session.scalar(select(func.count()).select_from(SessionResultRow).where(
            SessionResultRow.session_id.in_(["e1", "e2", "e3"]))) == 0
    for sid in ("e1", "e2", "e3"):
        assert client.get(f"/api/v1/clickstream/session/{sid}").status_code == 404
    assert stored(rt, "keep") == (2, 6, 4)
    assert len(client.get("/api/v1/clickstream/session/k2").json()["events"]) == 3

    trail = client.get("/api/v1/audit")
    assert trail.headers["X-Total-Count"] == "1"
    (event,) = trail.json()
    assert event["action"] == "erase_user" and event["actor"] == "api"
    # 3 sessions in chunks of 2: two transactions
    assert event["detail"] == {"sessions": 3, "results": 9, "events": 3, "chunks": 2,
                               "complete": True}
    text = json.dumps(event)
    assert "erase me" not in text and "secret query" not in text

    # idempotent: again (or an unknown user) erases nothing and still answers 200
    assert client.delete(f"{USERS}/{ERASED}").json() == {"sessions": 0, "results": 0,
                                                          "events": 0}
    assert client.delete(f"{USERS}/nobody").json()["sessions"] == 0
    assert client.get("/api/v1/audit").headers["X-Total-Count"] == "3"


@pytest.mark.backends("sqlite-embedded")
def test_the_audit_trail_names_a_token_caller_and_pages_newest_first(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(run_worker=False, api_token="s3cret-token-0123456789")
    client.headers["Authorization"] = "Bearer s3cret-token-0123456789"
    for user in ("x", "y", "z"):
        assert client.delete(f"{USERS}/{user}").status_code == 200
    page = client.get("/api/v1/audit", params={"limit": 2, "offset": 1})
    assert page.headers["X-Total-Count"] == "3"
    events = page.json()
    assert [e["actor"] for e in events] == ["user:token", "user:token"]
    first = client.get("/api/v1/audit", params={"limit": 1}).json()[0]
    assert first["id"] > events[0]["id"] > events[1]["id"]  # newest first
    assert "s3cret" not in json.dumps(events)
    bad = client.get("/api/v1/audit", params={"action": "nope"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "action"]
    too_long = client.delete(f"{USERS}/{'u' * 201}")
    assert too_long.status_code == 422


@pytest.mark.backends("sqlite-embedded", "postgres-redis")
def test_an_erasure_racing_event_pushes_leaves_nothing_and_no_error(
    client_factory: Callable[..., TestClient],
) -> None:
    """Pushes onto the user's sessions while they are erased: each lands before its session's
    chunk is deleted (and goes with it) or finds the session gone (404); never a 500, and
    nothing of the user is left."""
    client = client_factory(run_worker=False, retention_chunk_sessions=3)
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    sessions = [f"r{n:02d}" for n in range(12)]
    for sid in sessions:
        post_session(client, sid, "racer", clicks=0)

    def push(sid: str) -> int:
        events = [{"event_id": f"{sid}-{o}", "object_id": o} for o in ("a", "b")]
        return client.post("/api/v1/clickstream/session/events",
                           json={"session_id": sid, "events": events}).status_code

    with ThreadPoolExecutor(4) as pool:
        pushes = [pool.submit(push, sid) for sid in sessions]
        erased = client.delete(f"{USERS}/racer")
        codes = {future.result() for future in pushes}
    assert erased.status_code == 200 and erased.json()["sessions"] == 12
    assert codes <= {200, 404}
    assert stored(rt, "racer") == (0, 0, 0)
