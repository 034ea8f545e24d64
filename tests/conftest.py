from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from embtune.api.app import create_app
from embtune.config import Settings
from embtune.runtime import Runtime
from tests.support.backends import TEST_PLUGINS, Backend, provision, selected_backends

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

THREAD_GRACE_S = 10.0


def _background_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t is not threading.main_thread()}


@pytest.fixture(autouse=True)
def threads_end_with_their_test() -> Iterator[None]:
    """Every thread a test starts (a worker, a run's monitor, recovery, a proxy pipe) must be
    gone shortly after the test: one left behind heart-beats against a dropped database and
    runs into the next test. Threads of libraries that live for the process (their pools) are
    allowed by name."""
    before = _background_threads()
    yield
    deadline = time.monotonic() + THREAD_GRACE_S
    while True:
        left = [t for t in _background_threads() - before if t.is_alive() and not _lives_on(t)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"threads outlived the test: {sorted(t.name for t in left)}"


def _lives_on(thread: threading.Thread) -> bool:
    """Process-wide pools that libraries start once and reuse (not owned by any test)."""
    return thread.name.startswith(LIBRARY_THREADS)


# tqdm's monitor and schemathesis' ASGI portal are started once per process and reused
LIBRARY_THREADS = (
    "tqdm_monitor",
    "asyncio-portal-",
    "asyncio_",
    "AnyIO worker thread",
    "ThreadPoolExecutor-",
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        wanted = selected_backends()
        marker = metafunc.definition.get_closest_marker("backends")
        if marker:
            wanted = [b for b in wanted if b in marker.args]
        metafunc.parametrize("backend_name", wanted)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends(*names): run only on these backends")


@pytest.fixture
def backend(backend_name: str, tmp_path: Path) -> Iterator[Backend]:
    with provision(backend_name, tmp_path) as b:
        yield b


def make_settings(backend: Backend, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": backend.database_url,
        "broker_url": backend.broker_url,
        "queue_name": backend.queue_name,
        "redis_namespace": backend.namespace,
        "plugins": TEST_PLUGINS,
        "heartbeat_interval_s": 0.2,
        "recovery_interval_s": 0.5,
        "abort_grace_s": 5.0,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    return make_settings(backend, tmp_path / "data")


@pytest.fixture
def client_factory(backend: Backend, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Start an app (API + in-process worker unless `run_worker=False`) on this backend."""
    with ExitStack() as stack:

        def factory(run_worker: bool = True, **overrides: Any) -> TestClient:
            settings = make_settings(backend, tmp_path / "data", **overrides)
            app = create_app(settings, run_worker=run_worker)
            return stack.enter_context(TestClient(app, raise_server_exceptions=False))

        yield factory


@pytest.fixture
def client(client_factory: Callable[..., TestClient]) -> TestClient:
    return client_factory()


def register_model(client: TestClient, plugin: str = "sleepy", name: str = "mini") -> str:
    response = client.post(
        "/api/v1/embedding-models",
        json={"name": name, "plugin_name": plugin, "source": "builtin:all-MiniLM-L6-v2"},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture
def model_id(client: TestClient) -> str:
    return register_model(client)


def wait_until(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def task_status(client: TestClient, task_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/fine-tuning/task/{task_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_status(
    client: TestClient, task_id: str, status: str, timeout: float = 20.0
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        task = task_status(client, task_id)
        return task if task["status"] == status else None

    return wait_until(reached, timeout)


def events(client: TestClient, task_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/fine-tuning/task/{task_id}/events")
    assert response.status_code == 200
    return response.json()


def claims(client: TestClient, task_id: str) -> int:
    return sum(1 for e in events(client, task_id) if e["to_status"] == "processing")


@pytest.fixture
def runtime(backend: Backend, tmp_path: Path) -> Iterator[Runtime]:
    """The service's runtime with its in-process worker, driven through its services."""
    rt = Runtime.build(make_settings(backend, tmp_path / "data"))
    rt.start_worker()
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    """`embtune serve` / `worker` processes a test starts: killed at its end if still alive."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@contextmanager
def no_context() -> Iterator[None]:
    yield
