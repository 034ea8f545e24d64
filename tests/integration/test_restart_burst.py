"""The API restarted in the middle of a burst of creates: no task lost, none duplicated, none run
twice.

Twenty client threads create 200 tasks, each with its own idempotency key, retrying with the
same key after a connection error or a 503 until it is accepted, as a careful client does. After
about a third, `embtune serve --worker` is killed (-9, or SIGTERM for a graceful stop) and a new
one is started on the same port and database. In the end every key names exactly one task, each
client saw that task, every task is done, and each was claimed once, or once more for each time
a dying worker handed it back.
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import wait_until
from tests.support.backends import Backend
from tests.support.processes import ServerProcess

pytestmark = pytest.mark.backends("postgres-redis")

TASKS = "/api/v1/fine-tuning/task"
CREATES = 200
CLIENTS = 20
WORKER_THREADS = 4


@pytest.fixture
def server(backend: Backend, tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        backend, tmp_path / "data", "--worker", log=tmp_path / "serve.log",
        EMBTUNE_WORKER_THREADS=str(WORKER_THREADS),
        # a message the killed worker had fetched but not claimed is sent again after 3 s
        EMBTUNE_REDELIVER_AFTER_S="3",
    )
    try:
        server.start()
        yield server
    finally:
        server.close()


def create_until_accepted(http: httpx.Client, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The task, and how many tries it took."""
    deadline = time.monotonic() + 60
    for tries in itertools.count(1):
        try:
            response = http.post(TASKS, json=body)
            if response.status_code in (200, 201):
                return response.json(), tries
            assert response.status_code == 503, response.text
        except httpx.TransportError:
            pass  # refused while down, or cut by the kill: the same key again
        assert time.monotonic() < deadline, f"{body['idempotency_key']} never accepted"
        time.sleep(0.05)
    raise AssertionError("unreachable")


def burst_with_restart(
    server: ServerProcess, model_id: str, sig: signal.Signals
) -> tuple[dict[str, str], int]:
    """The task id each key's client was finally given, and how many creates were retried."""
    accepted: dict[str, str] = {}
    retried = 0
    lock = threading.Lock()

    def client(first: int) -> None:
        nonlocal retried
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for n in range(first, CREATES, CLIENTS):
                key = f"burst-{n:03d}"
                body = {"embedding_model_id": model_id, "idempotency_key": key,
                        "params": {"steps": 1}}
                task, tries = create_until_accepted(http, body)
                assert task["idempotency_key"] == key
                with lock:
                    accepted[key] = task["id"]
                    retried += tries > 1

    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(client, first) for first in range(CLIENTS)]
        wait_until(lambda: len(accepted) >= CREATES // 3, timeout=60, interval=0.005)
        server.restart(sig)
        for future in futures:
            future.result()
    return accepted, retried


def total(http: httpx.Client, **filters: str) -> int:
    response = http.get(TASKS, params={"limit": 1, **filters})
    assert response.status_code == 200, response.text
    return int(response.headers["X-Total-Count"])


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_restart_during_a_burst_of_creates_loses_and_duplicates_nothing(
    server: ServerProcess, sig: signal.Signals
) -> None:
    http = httpx.Client(base_url=server.url, timeout=30)
    model = http.post("/api/v1/embedding-models", json={
        "name": "m", "plugin_name": "sleepy", "source": "builtin:all-MiniLM-L6-v2"})
    assert model.status_code == 201, model.text

    accepted, retried = burst_with_restart(server, model.json()["id"], sig)

    assert retried > 0  # the restart really cut into the burst
    assert len(accepted) == CREATES
    assert total(http) == CREATES
    tasks = http.get(TASKS, params={"limit": 1000}).json()
    keys = Counter(t["idempotency_key"] for t in tasks)
    assert keys == Counter(accepted.keys())  # every key exactly once
    assert {t["idempotency_key"]: t["id"] for t in tasks} == accepted  # and as each client saw

    try:
        wait_until(lambda: total(http, status="done") == CREATES, timeout=60, interval=0.5)
    except AssertionError:
        by_status = Counter(t["status"] for t in http.get(TASKS, params={"limit": 1000}).json())
        raise AssertionError(f"not all done: {dict(by_status)}\n{server.log_tail()}") from None

    handed_back = 0
    for task in tasks:
        events = http.get(f"{TASKS}/{task['id']}/events").json()
        claims = sum(e["to_status"] == "processing" for e in events)
        requeues = sum(
            e["from_status"] == "processing" and e["to_status"] == "pending" for e in events
        )
        assert claims == 1 + requeues, (task["idempotency_key"], events)
        handed_back += requeues
    # only runs the restart cut short go round again: at most one per worker thread
    assert handed_back <= WORKER_THREADS
    http.close()
