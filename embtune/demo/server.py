"""The service in this process: uvicorn on a background thread, for the demo and the benchmarks."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from embtune.client import Client
from embtune.config import Settings


@dataclass
class DemoServer:
    url: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(settings: Settings, host: str, port: int) -> DemoServer:
    """Run the app with uvicorn in a background thread and wait until it answers."""
    import uvicorn

    from embtune.api.app import create_app

    config = uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="embtune-demo-server", daemon=True)
    thread.start()
    url = f"http://{host}:{port}"
    with Client(url, timeout=5) as probe:
        deadline = time.monotonic() + 120
        while True:
            try:
                probe.health()
                break
            except Exception:
                if time.monotonic() > deadline or not thread.is_alive():
                    raise RuntimeError("the embtune server did not start") from None
                time.sleep(0.2)
    return DemoServer(url, server, thread)
