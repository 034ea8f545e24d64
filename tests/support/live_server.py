"""A real HTTP server for tests that drive embtune over the network (the CLI, the client).

uvicorn runs the app in a thread on a socket bound here first, so there is no window in which
another process can take the port between choosing it and listening on it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from embtune.api.app import create_app
from embtune.config import Settings


def unused_port() -> int:
    """A port nothing listens on (for "server down" tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def live_server(
    settings: Settings, run_worker: bool | None = False, start_timeout_s: float = 20.0
) -> Iterator[str]:
    """Serve the app until the block ends; yields its base URL. `run_worker=None` runs the
    in-process worker on the embedded broker, as `embtune serve` does."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, run_worker=run_worker), log_level="warning")
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="live-server", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout_s
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
