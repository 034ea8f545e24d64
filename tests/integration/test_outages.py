"""PostgreSQL going away and coming back; an artifact store that cannot be written."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
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


# Small bounds so a stall costs seconds: connect (libpq's minimum), statement, pool, readiness.
STALL_TIMEOUTS = {
    "db_connect_timeout_s": 2,
    "db_statement_timeout_s": 0.5,
    "db_pool_timeout_s": 1.0,
    "readiness_timeout_s": 1.0,
}
# The longest one request may take in a stall: an idle pooled connection's ping and its
# replacement's connect, then the statement on the new one (answer deadline = statement + 1 s),
# plus scheduling slack on a loaded machine.
ANSWER_S = STALL_TIMEOUTS["db_statement_timeout_s"] + 1.0
REQUEST_BOUND_S = ANSWER_S + STALL_TIMEOUTS["db_connect_timeout_s"] + ANSWER_S + 1.5


def _timed_get(client: TestClient, path: str) -> tuple[int, str | None, float]:
    started = time.monotonic()
    response = client.get(path)
    return response.status_code, response.headers.get("retry-after"), time.monotonic() - started


@pytest.mark.backends("postgres-redis")
def test_stalled_database_answers_503_within_a_bound_and_recovers(
    backend: Backend, client_factory
) -> None:
    """A database that keeps connections open but stops answering: every request ends in 503
    with Retry-After within a bound (never a hang, never a 500 — not even when 60 concurrent
    requests exhaust the pool), /readyz names the database within its own bound, and all
    works again once the database answers."""
    proxy, proxied = database_behind_proxy(backend)
    client: TestClient = client_factory(
        run_worker=False, database_url=proxied, recovery_interval_s=3600, **STALL_TIMEOUTS
    )
    # the stall ends by itself long after the bounds: a regression fails instead of hanging
    safety = threading.Timer(6 * REQUEST_BOUND_S, proxy.resume)
    try:
        model_id = register_model(client)
        assert client.get(TASKS).status_code == 200  # the pool holds a live connection
        proxy.stall()
        safety.start()

        started = time.monotonic()
        listed = client.get(TASKS)
        assert time.monotonic() - started < REQUEST_BOUND_S
        assert listed.status_code == 503
        assert listed.json()["detail"].startswith("database unavailable")
        assert listed.headers["retry-after"]

        started = time.monotonic()
        ready = client.get("/readyz")
        assert time.monotonic() - started < STALL_TIMEOUTS["readiness_timeout_s"] + 1.0
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"].startswith("unreachable")
        assert ready.json()["checks"]["broker"] == "ok"

        with ThreadPoolExecutor(60) as pool:
            answers = list(pool.map(lambda _: _timed_get(client, TASKS), range(60)))
        assert Counter(status for status, _, _ in answers) == {503: 60}
        assert all(retry_after for _, retry_after, _ in answers)
        # 60 requests share the server's worker threads and 30 connections: a few rounds
        assert max(took for _, _, took in answers) < 3 * REQUEST_BOUND_S

        proxy.resume()
        wait_until(lambda: client.get(TASKS).status_code == 200, 3 * REQUEST_BOUND_S, 0.2)
        created = client.post(TASKS, json={"embedding_model_id": model_id})
        assert created.status_code == 201, created.text
        wait_until(lambda: client.get("/readyz").status_code == 200, 3 * REQUEST_BOUND_S, 0.2)
    finally:
        safety.cancel()
        proxy.stop()
        proxy.join()


@pytest.mark.backends("postgres-redis")
def test_readyz_answers_within_its_bound_when_the_broker_stalls(
    backend: Backend, client_factory
) -> None:
    parts = urlsplit(backend.broker_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    proxy.start()
    proxied = backend.broker_url.replace(f":{parts.port}/", f":{proxy.port}/")
    client: TestClient = client_factory(
        run_worker=False, broker_url=proxied, recovery_interval_s=3600, readiness_timeout_s=1.0
    )
    try:
        assert client.get("/readyz").status_code == 200
        proxy.stall()
        for _ in range(2):  # the second probe joins the first's still-waiting check
            started = time.monotonic()
            ready = client.get("/readyz")
            assert time.monotonic() - started < 2.0
            assert ready.status_code == 503
            assert ready.json()["checks"] == {
                "database": "ok", "broker": "unreachable: no answer within 1 s"
            }
        proxy.resume()
        wait_until(lambda: client.get("/readyz").status_code == 200, 10, 0.2)
    finally:
        proxy.stop()
        proxy.join()


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
