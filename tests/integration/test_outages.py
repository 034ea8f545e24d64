"""PostgreSQL going away and coming back; an artifact store that cannot be written."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from embtune.storage import migrate
from embtune.storage.db import PING_IF_IDLE_S, make_engine
from tests.conftest import register_model, wait_status, wait_until
from tests.support.backends import Backend
from tests.support.proxy import TcpProxy

TASKS = "/api/v1/fine-tuning/task"


def database_behind_proxy(backend: Backend) -> tuple[TcpProxy, str]:
    """A migrated database reached through a TCP proxy the test can cut; (proxy, its URL)."""
    parts = urlsplit(backend.database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    engine = make_engine(backend.database_url)
    migrate.upgrade(engine)
    engine.dispose()
    return proxy, backend.database_url.replace(f":{parts.port}/", f":{proxy.port}/")


@pytest.mark.backends("postgres-redis")
def test_database_down_gives_503_and_recovers_by_itself(backend: Backend, client_factory) -> None:
    proxy, proxied = database_behind_proxy(backend)
    client: TestClient = client_factory(database_url=proxied)
    try:
        model_id = register_model(client)
        proxy.stop()
        listed = client.get(TASKS)
        assert listed.status_code == 503
        assert listed.json()["detail"].startswith("database unavailable")
        assert listed.headers["retry-after"]
        created = client.post(TASKS, json={"embedding_model_id": model_id})
        assert created.status_code == 503
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200  # alive, just not ready
        proxy.start()
        wait_until(lambda: client.get(TASKS).status_code == 200, 20)
        assert client.get(TASKS).headers["X-Total-Count"] == "0"  # the failed create left nothing
        task = client.post(TASKS, json={"embedding_model_id": model_id}).json()
        wait_status(client, task["id"], "done")
    finally:
        proxy.stop()


@pytest.mark.backends("postgres-redis")
def test_after_a_database_restart_the_first_request_already_succeeds(
    backend: Backend, client_factory
) -> None:
    """Pooled connections that sat idle across the restart are pinged and replaced on
    checkout, so no client sees the dead ones; busy connections skip the ping."""
    proxy, proxied = database_behind_proxy(backend)
    # no recovery pass in between: its query would meet a dead connection first
    client: TestClient = client_factory(run_worker=False, database_url=proxied,
                                        recovery_interval_s=3600)
    try:
        model_id = register_model(client)
        assert client.get(TASKS).status_code == 200  # the pool now holds open connections
        proxy.stop()  # the database goes away and comes back: every pooled connection is dead
        proxy.start()
        time.sleep(PING_IF_IDLE_S + 0.3)
        for _ in range(3):
            assert client.get(TASKS).status_code == 200
        created = client.post(TASKS, json={"embedding_model_id": model_id})
        assert created.status_code == 201, created.text
    finally:
        proxy.stop()


@pytest.mark.backends("sqlite-embedded")
def test_unwritable_artifact_store_fails_the_task_clearly(client_factory, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "models").write_text("a file where the model directory should be")
    client: TestClient = client_factory()
    model_id = register_model(client)
    task = client.post(TASKS, json={"embedding_model_id": model_id}).json()
    failed = wait_status(client, task["id"], "failed")
    assert "artifact store" in failed["detail"] and "not writable" in failed["detail"]
    assert failed["result_model_id"] is None
    models = client.get("/api/v1/embedding-models").json()
    assert [m["id"] for m in models] == [model_id]
