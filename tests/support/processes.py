"""Real `embtune serve` / `embtune worker` processes for fault tests: started on a backend,
killed, started again on the same port and database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.backends import Backend
from tests.support.live_server import unused_port

ROOT = Path(__file__).resolve().parents[2]

# Lost work is noticed within seconds instead of the production minutes.
FAST_RECOVERY = {
    "EMBTUNE_HEARTBEAT_INTERVAL_S": "0.2",
    "EMBTUNE_HEARTBEAT_TIMEOUT_S": "2",
    "EMBTUNE_RECOVERY_INTERVAL_S": "0.5",
}


def spawn(
    backend: Backend, data_dir: Path, *args: str, log: Path | None = None, **env: str
) -> subprocess.Popen:
    """`python -m embtune.cli ARGS` on this backend; output goes to `log` (appended) if given."""
    full_env = {**os.environ, **backend.env(data_dir, **FAST_RECOVERY, **env),
                "PYTHONPATH": str(ROOT)}
    out = log.open("ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "embtune.cli", *args, "--log-level", "warning"],
            env=full_env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
    finally:
        if log:
            out.close()  # the child holds its own descriptor


class ServerProcess:
    """`embtune serve` on one port; `restart` brings a new process up on the same port."""

    def __init__(
        self, backend: Backend, data_dir: Path, *serve_args: str, log: Path, **env: str
    ) -> None:
        self.backend = backend
        self.data_dir = data_dir
        self.port = unused_port()
        self.serve_args = serve_args
        self.log = log
        self.env = env
        self.processes: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def current(self) -> subprocess.Popen:
        return self.processes[-1]

    def start(self, timeout_s: float = 90.0) -> None:
        self.processes.append(
            spawn(self.backend, self.data_dir, "serve", "--port", str(self.port),
                  *self.serve_args, log=self.log, **self.env)
        )
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.url, timeout=5) as http:
            while True:
                if self.current.poll() is not None:
                    raise AssertionError(f"embtune serve exited early:\n{self.log_tail()}")
                try:
                    if http.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"embtune serve not up in {timeout_s} s:\n"
                                         f"{self.log_tail()}")
                time.sleep(0.1)

    def stop(self, sig: signal.Signals = signal.SIGKILL, timeout_s: float = 60.0) -> int:
        """Signal the running server and wait until it is gone (its port is free again)."""
        self.current.send_signal(sig)
        return self.current.wait(timeout=timeout_s)

    def restart(self, sig: signal.Signals = signal.SIGKILL) -> None:
        self.stop(sig)
        self.start()

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no output)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
