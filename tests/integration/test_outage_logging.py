"""An outage of the database and of the abort signals' Redis, while a task runs: every retry
loop logs the outage's start once (with its traceback) and its end once, not each attempt."""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.conftest import register_model, wait_status, wait_until
from tests.integration.test_outages import TASKS, database_behind_proxy
from tests.support.backends import Backend
from tests.support.proxy import TcpProxy

OUTAGE_S = 2.5


@pytest.mark.backends("postgres-redis")
def test_an_outage_logs_once_per_loop_not_per_attempt(
    backend: Backend, client_factory, caplog: pytest.LogCaptureFixture
) -> None:
    db_proxy, proxied_db = database_behind_proxy(backend)
    parts = urlsplit(backend.broker_url)
    redis_proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    redis_proxy.start()
    client: TestClient = client_factory(
        run_worker=True,
        database_url=proxied_db,
        abort_redis_url=backend.broker_url.replace(f":{parts.port}/", f":{redis_proxy.port}/"),
        heartbeat_interval_s=0.2,
        recovery_interval_s=0.3,
    )
    try:
        model_id = register_model(client)
        task = client.post(
            TASKS,
            json={"embedding_model_id": model_id, "params": {"steps": 100, "step_seconds": 0.05}},
        ).json()
        wait_until(lambda: client.get(f"{TASKS}/{task['id']}").json()["progress"]["step"] > 0)
        caplog.clear()
        caplog.set_level(logging.WARNING)
        db_proxy.stop()
        redis_proxy.stop()
        time.sleep(OUTAGE_S)  # heartbeats (5/s), recovery (3/s) and the watcher (1/s) all fail
        db_proxy.start()
        redis_proxy.start()
        done = wait_status(client, task["id"], "done", timeout=30)
        assert done["attempts"] == 1  # the run lived through the outage
        records = list(caplog.records)
    finally:
        db_proxy.stop()
        redis_proxy.stop()
        db_proxy.join()
        redis_proxy.join()
    loops = {
        "embtune.services.runner": f"heartbeat for task {task['id']}",  # 5 beats/s + polls
        "embtune.services.recovery": "recovery pass",  # 3 passes/s
        "embtune.queue.abort_backend": "abort watcher (redis)",  # a wait a second
    }
    for logger, what in loops.items():
        lines = [(r.getMessage(), bool(r.exc_info)) for r in records if r.name == logger]
        assert len(lines) == 2, lines
        (first, traceback), (last, no_traceback) = lines
        assert first.startswith(f"{what} failed, retrying") and traceback
        assert re.fullmatch(rf"{re.escape(what)} back after [0-9.]+ s \(\d+ attempts failed\)",
                            last) and not no_traceback
    # dramatiq-abort's watcher logged nothing itself, and nothing else of ours spoke
    assert [r.name for r in records if r.name.startswith(("embtune", "dramatiq"))] == [
        r.name for r in records if r.name in loops
    ]
