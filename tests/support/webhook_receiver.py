"""A real HTTP receiver for webhook tests, and a signature verifier written from the Standard
Webhooks spec rather than from embtune's code (so a bug in one is not hidden by the other).

    with WebhookReceiver() as receiver:
        ...  # register receiver.url, make something happen
        request = receiver.wait_for(lambda r: r.json["type"] == "task.done")
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> bool:
    """The receiver's side of the spec: HMAC-SHA256 over `id.timestamp.body` keyed with the
    base64-decoded secret (after `whsec_`), any of the space-separated `v1,` signatures, and a
    timestamp within `tolerance_s` of now."""
    key = base64.b64decode(secret.split("_", 1)[1])
    msg_id, stamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(stamp)) > tolerance_s:
        return False
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    for signature in headers["webhook-signature"].split(" "):
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebhookReceiver:
    """Listens on 127.0.0.1 (`start`/`stop`, or as a context manager); answers `status` and
    keeps every request. Created with a port and not started, it is a receiver that is down:
    connections to `url` are refused until `start`."""

    def __init__(self, port: int | None = None, status: int = 204) -> None:
        self.port = port or free_port()
        self.status = status
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.received.append(Received(headers, body))
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def requests(self, predicate: Callable[[Received], bool] = lambda _: True) -> list[Received]:
        with self._lock:
            return [r for r in self.received if predicate(r)]

    def wait_for(
        self, predicate: Callable[[Received], bool], count: int = 1, timeout: float = 20.0
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.requests(predicate)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                seen = [r.json.get("type") for r in self.requests()]
                raise AssertionError(f"{count} matching request(s) not received; saw {seen}")
            time.sleep(0.05)


def of_type(event: str, **data: Any) -> Callable[[Received], bool]:
    """A predicate: the payload's `type` is `event` and its `data` has these values."""

    def matches(request: Received) -> bool:
        payload = request.json
        return payload.get("type") == event and all(
            payload["data"].get(k) == v for k, v in data.items()
        )

    return matches
