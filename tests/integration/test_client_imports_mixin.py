"""The Python client's import-task calls (`embtune.client_imports`) against a real app."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from embtune.client import Client, ConflictError, NotFoundError, ValidationError
from embtune.schemas.imports import ImportTaskPublic

ROWS = [
    {"session_id": "s1", "search_query": "red scarf", "search_results": [{"object_id": "a"}],
     "clicks": ["a"]},
    "{broken",
    {"session_id": "s3", "search_query": "boots", "search_results": [{"object_id": "b"}]},
]


def typed(app: TestClient) -> Client:
    """The typed client over the app's own test client (an `httpx.Client` too): the same
    plumbing as over the network, in process, on every backend."""
    api = Client(str(app.base_url))
    api._http.close()
    api._http = app
    return api


def sessions_file(data_dir: Path) -> Path:
    path = data_dir / "exports" / "sessions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n"
                            for row in ROWS))
    return path


def test_create_follow_list_events_and_rejections(
    client_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    app = client_factory()
    path = sessions_file(tmp_path / "data")
    with typed(app) as api:
        task = api.create_import(str(path), kind="sessions", idempotency_key="nightly",
                                 metadata={"source": "test"})
        assert isinstance(task, ImportTaskPublic)
        assert (task.kind.value, task.data_kind, task.url, task.format, task.metadata) == (
            "import", "sessions", str(path), "ndjson", {"source": "test"})
        assert task.embedding_model_id is None
        assert api.create_import(str(path), kind="sessions", idempotency_key="nightly",
                                 metadata={"source": "test"}).id == task.id

        updates = list(api.follow_import(task.id, interval_s=0.05))
        final = updates[-1]
        assert final.status.value == "done", final.detail
        assert {name: final.metrics[name] for name in ("rows", "accepted", "rejected")} == {
            "rows": 3, "accepted": 2, "rejected": 1}
        assert api.get_import(task.id).metrics == final.metrics

        page = api.list_imports(status="done")
        assert page.total == 1 and [t.id for t in page.items] == [task.id]
        assert api.list_imports(status="pending").total == 0
        kinds = [(e.from_status, e.to_status) for e in api.import_events(task.id)]
        assert any(to is not None and to.value == "done" for _, to in kinds)

        report = api.download_rejections(task.id, tmp_path / "rejected.ndjson")
        rejected = [json.loads(line) for line in report.read_text().splitlines()]
        assert [row["row"] for row in rejected] == [2] and rejected[0]["reason"]

        with pytest.raises(ConflictError):
            api.restart_import(task.id)  # a done import is final
        with pytest.raises(NotFoundError):
            api.get_import("0" * 32)
        with pytest.raises(NotFoundError):
            api.download_rejections("0" * 32, tmp_path / "none.ndjson")
        with pytest.raises(ValidationError):
            api.create_import(str(path), kind="pictures")


def test_cancel_then_restart_a_waiting_import(
    client_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    app = client_factory(run_worker=False)  # no worker: the task waits
    path = sessions_file(tmp_path / "data")
    with typed(app) as api:
        task = api.create_import(path.as_uri(), kind="sessions", format="ndjson")
        assert task.status.value == "pending" and task.can_cancel
        canceled = api.cancel_import(task.id)
        assert canceled.status.value == "canceled" and canceled.can_restart
        assert api.restart_import(task.id).status.value == "pending"
