"""A TCP proxy a test can switch off and on: a broker outage without stopping the shared
service other tests use.

Besides cutting connections (`stop`), it can `stall`: keep every connection open and accept
new ones, but forward no byte in either direction until `resume` — a database or broker that
hangs (a paused process, a wedged proxy) rather than refusing. The kernel still acknowledges
what the client sends, so TCP keepalives and `tcp_user_timeout` see a healthy peer: only a
client-side deadline on the answer notices.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        self._spawn(self._accept, listener)

    def stall(self) -> None:
        """Stop forwarding bytes (and closes) on every connection, open or new, without closing
        any: the far end seems to think forever."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again, starting with whatever was held back during the stall."""
        self._flowing.set()

    def stop(self) -> None:
        """Refuse new connections and cut the open ones, like a crashed broker."""
        with self._lock:
            if self._listener is not None:
                # shutdown wakes the thread blocked in accept(); close alone would not
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    conn.close()
            self._conns.clear()
        self._flowing.set()  # stalled pipes wake up, find their sockets closed and end

    def join(self, timeout: float = 5.0) -> None:
        """After `stop`: wait for the proxy's threads to end (a test leaves none behind)."""
        for thread in list(self._threads):
            thread.join(timeout)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                self._spawn(self._pipe, a, b)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                self._flowing.wait()  # a stall holds this chunk (or this EOF) back
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                # shutdown, not just close: it wakes the opposite pipe blocked in recv()
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
