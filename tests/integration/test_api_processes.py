"""`embtune serve --processes 2`: two API processes on one port behave as one service.

Twenty clients create 200 tasks over 20 idempotency keys at once, so the same key reaches both
processes at the same moment: exactly 20 tasks exist, every client of a key was given the same
task, the list totals agree, and an `embtune worker` runs each task once.
"""

from __future__ import annotations

import signal
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_until
from tests.support.backends import Backend
from tests.support.processes import ServerProcess, spawn

pytestmark = pytest.mark.backends("postgres-redis")

TASKS = "/api/v1/fine-tuning/task"
KEYS = 20
CREATES = 200


def test_two_api_processes_create_each_keyed_task_once(backend: Backend, tmp_path: Path) -> None:
    server = ServerProcess(backend, tmp_path / "data", "--processes", "2",
                           log=tmp_path / "serve.log")
    worker = None
    try:
        server.start()
        http = httpx.Client(base_url=server.url, timeout=30)
        model = http.post("/api/v1/embedding-models", json={
            "name": "m", "plugin_name": "sleepy", "source": "builtin:all-MiniLM-L6-v2"})
        assert model.status_code == 201, model.text
        body = {"embedding_model_id": model.json()["id"], "params": {"steps": 1}}

        def create(n: int) -> tuple[str, str, int]:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                key = f"k{n % KEYS}"
                response = client.post(TASKS, json={**body, "idempotency_key": key})
                assert response.status_code in (200, 201), response.text
                return key, response.json()["id"], response.status_code

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(create, range(CREATES)))
        ids_by_key: dict[str, set[str]] = defaultdict(set)
        for key, task_id, _ in results:
            ids_by_key[key].add(task_id)
        assert len(ids_by_key) == KEYS and all(len(v) == 1 for v in ids_by_key.values())
        assert Counter(code for *_, code in results)[201] == KEYS  # one creator per key
        listed = http.get(TASKS, params={"limit": 1000})
        assert listed.headers["X-Total-Count"] == str(KEYS)
        assert {t["id"] for t in listed.json()} == {i for v in ids_by_key.values() for i in v}

        worker = spawn(backend, tmp_path / "worker", "worker", log=tmp_path / "worker.log")
        wait_until(lambda: http.get(TASKS, params={"status": "done", "limit": 1})
                   .headers["X-Total-Count"] == str(KEYS), timeout=90)
        for task in http.get(TASKS, params={"limit": 1000}).json():
            events = http.get(f"{TASKS}/{task['id']}/events").json()
            assert [e["to_status"] for e in events if e["kind"] == "transition"] == [
                "pending", "processing", "done"]
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        if server.processes and server.current.poll() is None:
            server.stop(signal.SIGTERM)  # the supervisor stops its children
        server.close()
