"""Import tasks through the API: files on fsspec's `memory://`, `file://` and plain paths, NDJSON
and Parquet, sessions and items; the rejected-rows report; cancel and restart; URL refusals."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from embtune.services import import_run
from tests.conftest import wait_until

IMPORTS = "/api/v1/imports"


def session(n: int, **extra: Any) -> dict[str, Any]:
    return {"session_id": f"s{n}", "search_query": f"query {n}",
            "search_results": [{"object_id": "a", "rank": 1}, {"object_id": "b", "rank": 2}],
            "clicks": ["a"], **extra}


def ndjson(rows: list[Any]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def parquet(table: pa.Table, row_group_size: int = 3) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=row_group_size)
    return out.getvalue()


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[Callable[[str, bytes], str]]:
    """Write a file on fsspec's in-process memory filesystem; its URL. Removed after the test."""
    fs = fsspec.filesystem("memory")
    root = f"/{tmp_path.name}"

    def put(name: str, data: bytes) -> str:
        with fs.open(f"{root}/{name}", "wb") as handle:
            handle.write(data)
        return f"memory://{root.lstrip('/')}/{name}"

    yield put
    if fs.exists(root):
        fs.rm(root, recursive=True)


def create(client: TestClient, expect: int = 201, **body: Any) -> dict[str, Any]:
    response = client.post(IMPORTS, json=body)
    assert response.status_code == expect, response.text
    return response.json()


def finished(client: TestClient, task_id: str, timeout: float = 30) -> dict[str, Any]:
    def over() -> dict[str, Any] | None:
        task = client.get(f"{IMPORTS}/{task_id}").json()
        return task if task["status"] not in ("pending", "processing") else None

    return wait_until(over, timeout)


def report(client: TestClient, task_id: str) -> list[dict[str, Any]]:
    response = client.get(f"{IMPORTS}/{task_id}/rejections")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def stored_sessions(client: TestClient, ids: list[str]) -> list[str]:
    return [i for i in ids
            if client.get(f"/api/v1/clickstream/session/{i}").status_code == 200]


def test_ndjson_sessions_from_memory_with_malformed_lines_reported(
    client_factory: Callable[..., TestClient], memory: Callable[[str, bytes], str]
) -> None:
    client = client_factory(import_chunk_rows=2)
    lines: list[Any] = [session(0), session(1), "{not json", "", session(2), "[1, 2]",
                        {"session_id": "s9"}, session(3)]
    url = memory("sessions.jsonl", ndjson(lines))
    task = finished(client, create(client, url=url, kind="sessions")["id"])
    assert task["status"] == "done", task["detail"]
    assert (task["kind"], task["url"], task["format"], task["data_kind"]) == (
        "import", url, "ndjson", "sessions")
    assert task["embedding_model_id"] is None
    metrics = task["metrics"]
    assert {k: metrics[k] for k in ("rows", "accepted", "duplicate", "conflict", "rejected",
                                    "resumed_from_row")} == {
        "rows": 7, "accepted": 4, "duplicate": 0, "conflict": 0, "rejected": 3,
        "resumed_from_row": 0}
    assert metrics["chunks"] == 4 and metrics["bytes"] == len(ndjson(lines))
    assert metrics["peak_rss_mb"] > 0 and metrics["rows_per_s"] > 0
    progress = task["progress"]
    assert progress["step"] == progress["total_steps"] == progress["bytes"] == metrics["bytes"]
    assert progress["rows"] == 7 and progress["accepted"] == 4 and progress["fraction"] == 1.0
    assert stored_sessions(client, ["s0", "s1", "s2", "s3", "s9"]) == ["s0", "s1", "s2", "s3"]
    clicked = client.get("/api/v1/clickstream/session/s2").json()["events"]
    assert [(e["event_id"], e["object_id"]) for e in clicked] == [("s2-c0", "a")]
    rejected = report(client, task["id"])
    assert [r["row"] for r in rejected] == [3, 6, 7]  # file lines; the blank line 4 is no row
    assert rejected[0]["reason"].startswith("not valid JSON") and rejected[0]["excerpt"] == (
        "{not json")
    assert rejected[1]["reason"] == "expected a JSON object, got an array"
    assert rejected[2]["field"] == "search_query" and "search_query" in rejected[2]["reason"]


def test_a_second_import_of_the_same_file_stores_nothing_twice(
    client_factory: Callable[..., TestClient], memory: Callable[[str, bytes], str]
) -> None:
    client = client_factory(import_chunk_rows=3)
    url = memory("twice.ndjson", ndjson([session(n) for n in range(4)]))
    first = finished(client, create(client, url=url, kind="sessions")["id"])
    again = finished(client, create(client, url=url, kind="sessions")["id"])
    assert first["metrics"]["accepted"] == 4
    assert (again["metrics"]["accepted"], again["metrics"]["duplicate"]) == (0, 4)


@pytest.mark.backends("sqlite-embedded", "postgres-redis")
def test_parquet_sessions_from_a_file_url_and_items_from_a_plain_path(
    client_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    client = client_factory(import_chunk_rows=2, import_roots=[files])
    table = pa.table({
        "session_id": [f"p{n}" for n in range(5)],
        "search_query": [f"q{n}" for n in range(5)],
        "search_results": [[{"object_id": "a", "rank": 1}]] * 5,
        "clicks": [["a"], [], ["a"], [], ["a"]],
        "search_meta": ['{"page": 1}'] * 5,
        "unused": [1, 2, 3, 4, 5],
    })
    (files / "sessions.parquet").write_bytes(parquet(table))
    task = finished(client, create(client, url=(files / "sessions.parquet").as_uri(),
                                   kind="sessions")["id"])
    assert task["status"] == "done", task["detail"]
    assert (task["format"], task["metrics"]["rows"], task["metrics"]["accepted"]) == (
        "parquet", 5, 5)
    stored = client.get("/api/v1/clickstream/session/p2").json()
    assert stored["search_meta"] == {"page": 1} and len(stored["events"]) == 1

    items = tmp_path / "data" / "items.jsonl"
    items.write_bytes(ndjson([{"object_id": f"i{n}", "text": f"item {n}"} for n in range(3)]
                             + [{"object_id": "i9"}]))
    done = finished(client, create(client, url=str(items), kind="items")["id"])
    assert (done["metrics"]["accepted"], done["metrics"]["rejected"]) == (3, 1)
    assert client.get("/api/v1/items/i1").json()["text"] == "item 1"
    assert report(client, done["id"])[0]["field"] == "text"


def test_parquet_of_the_wrong_schema_rejects_every_row_naming_the_column(
    client_factory: Callable[..., TestClient], memory: Callable[[str, bytes], str]
) -> None:
    client = client_factory(import_chunk_rows=2)
    missing = memory("no_query.parquet", parquet(pa.table({
        "session_id": ["x0", "x1", "x2"],
        "search_results": [[{"object_id": "a"}]] * 3,
    })))
    task = finished(client, create(client, url=missing, kind="sessions")["id"])
    assert task["status"] == "done" and task["metrics"]["rejected"] == 3
    rows = report(client, task["id"])
    assert [r["row"] for r in rows] == [1, 2, 3]
    assert {r["field"] for r in rows} == {"search_query"}
    assert "has no `search_query` column" in rows[0]["reason"]

    wrong_type = memory("typed.parquet", parquet(pa.table({
        "session_id": ["y0", "y1"],
        "search_query": ["q", "q"],
        "search_results": ["a,b", "c"],  # a string, not a list of results
    })))
    task = finished(client, create(client, url=wrong_type, kind="sessions")["id"])
    rows = report(client, task["id"])
    assert [r["field"] for r in rows] == ["search_results", "search_results"]
    assert "y0" in rows[0]["excerpt"]


@pytest.mark.backends("sqlite-embedded")
def test_a_file_that_is_not_parquet_is_refused_with_a_clear_detail(
    client_factory: Callable[..., TestClient], memory: Callable[[str, bytes], str]
) -> None:
    client = client_factory()
    url = memory("fake.parquet", b"this is not parquet at all")
    task = finished(client, create(client, url=url, kind="items")["id"])
    assert task["status"] == "refused"
    assert "not a readable Parquet file" in task["detail"]


@pytest.mark.backends("sqlite-embedded")
def test_urls_the_server_must_not_read_are_422_naming_the_field(
    client_factory: Callable[..., TestClient], tmp_path: Path, memory: Callable[[str, bytes], str]
) -> None:
    client = client_factory(run_worker=False)
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(ndjson([session(0)]))
    inside = tmp_path / "data" / "link.jsonl"
    inside.parent.mkdir(exist_ok=True)
    inside.symlink_to(outside)  # under the data dir by name only
    cases = {
        str(outside): "url",
        outside.as_uri(): "url",
        str(inside): "url",
        "data/relative.jsonl": "url",
        "nosuchproto://bucket/a.jsonl": "url",
        "zip://a.jsonl::" + outside.as_uri(): "url",
        memory("present.jsonl", b"").replace("present", "gone"): "url",
        memory("sessions.txt", ndjson([session(0)])): "format",
    }
    for url, field in cases.items():
        response = client.post(IMPORTS, json={"url": url, "kind": "sessions"})
        assert response.status_code == 422, (url, response.text)
        assert response.json()["detail"][0]["loc"] == ["body", field], url
    response = client.post(IMPORTS, json={"url": outside.as_uri(), "kind": "clicks"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "kind"]
    told = create(client, url=memory("told.txt", ndjson([session(0)])), kind="sessions",
                  format="ndjson")
    assert told["format"] == "ndjson"


@pytest.mark.backends("sqlite-embedded")
def test_create_is_idempotent_by_key_and_lists_only_imports(
    client_factory: Callable[..., TestClient], memory: Callable[[str, bytes], str]
) -> None:
    client = client_factory(run_worker=False)
    url = memory("keyed.jsonl", ndjson([session(0)]))
    first = create(client, url=url, kind="sessions", idempotency_key="k1")
    again = create(client, 200, url=url, kind="sessions", idempotency_key="k1")
    assert again["id"] == first["id"]
    create(client, 409, url=url, kind="items", idempotency_key="k1")
    listed = client.get(IMPORTS, params={"status": "pending"})
    assert listed.headers["X-Total-Count"] == "1" and listed.json()[0]["id"] == first["id"]
    assert client.get(f"/api/v1/fine-tuning/task/{first['id']}").status_code == 404
    assert client.get(f"{IMPORTS}/nope/rejections").status_code == 404


class PausedReader:
    """A reader that stops after its first chunk until the test lets it go on."""

    def __init__(self, reader: Any, gate: threading.Event) -> None:
        self.reader, self.gate = reader, gate
        self.total_bytes, self.total_rows = reader.total_bytes, reader.total_rows

    def chunks(self) -> Iterator[Any]:
        for n, chunk in enumerate(self.reader.chunks()):
            if n == 1:
                assert self.gate.wait(20)
            yield chunk

    def close(self) -> None:
        self.reader.close()


def test_cancel_stops_committing_and_restart_resumes_after_the_last_chunk(
    client_factory: Callable[..., TestClient], memory: Callable[[str, bytes], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = threading.Event()
    real = import_run.open_reader
    paused = {"on": True}
    monkeypatch.setattr(import_run, "open_reader", lambda *a, **k: (
        PausedReader(real(*a, **k), gate) if paused["on"] else real(*a, **k)))
    client = client_factory(import_chunk_rows=2)
    url = memory("slow.jsonl", ndjson([session(n) for n in range(6)]))
    task_id = create(client, url=url, kind="sessions")["id"]
    wait_until(lambda: client.get(f"{IMPORTS}/{task_id}").json()["progress"].get("rows") == 2)
    canceled = client.put(f"{IMPORTS}/{task_id}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    gate.set()  # the run reads its next chunk and finds the task canceled
    wait_until(lambda: any("run stopped" in e["message"] for e in
                           client.get(f"{IMPORTS}/{task_id}/events").json()))
    assert stored_sessions(client, [f"s{n}" for n in range(6)]) == ["s0", "s1"]

    paused["on"] = False
    restarted = client.put(f"{IMPORTS}/{task_id}/restart")
    assert restarted.status_code == 200
    done = finished(client, task_id)
    assert done["status"] == "done", done["detail"]
    assert done["metrics"]["resumed_from_row"] == 2
    assert (done["metrics"]["rows"], done["metrics"]["accepted"]) == (6, 6)
    assert done["metrics"]["duplicate"] == 0  # the first chunk was not read again
    assert len(stored_sessions(client, [f"s{n}" for n in range(6)])) == 6
    assert client.put(f"{IMPORTS}/{task_id}/restart").status_code == 409
