"""Readiness checks that answer within a bound, whatever the dependencies do.

A check is a blocking call (a database ping, a broker ping) that a stalled dependency can hold
for as long as that client's own timeouts allow — tens of seconds for a broker socket. An
orchestrator's probe must not hang that long, so each check runs on its own daemon thread and
`/readyz` waits for them together at most `timeout_s`. A check that has not answered by then
counts as not ready; its thread ends when the client gives up, and until then every later probe
waits on that same attempt instead of starting another, so a long stall never piles up threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class _Attempt:
    def __init__(self, check: Callable[[], None]) -> None:
        self.done = threading.Event()
        self.outcome = ""
        self._check = check

    def run(self) -> None:
        try:
            self._check()
            self.outcome = "ok"
        except Exception as exc:
            self.outcome = f"unreachable: {type(exc).__name__}"
        finally:
            self.done.set()


class ReadinessProbes:
    def __init__(self, checks: dict[str, Callable[[], None]], timeout_s: float) -> None:
        self.checks = checks
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._running: dict[str, _Attempt] = {}

    def run(self) -> dict[str, str]:
        """Each check's outcome: `ok`, `unreachable: <error>` or `unreachable: no answer…`."""
        deadline = time.monotonic() + self.timeout_s
        attempts = {name: self._attempt(name) for name in self.checks}  # all start at once
        outcomes: dict[str, str] = {}
        for name, attempt in attempts.items():
            if attempt.done.wait(max(0.0, deadline - time.monotonic())):
                outcomes[name] = attempt.outcome
            else:
                outcomes[name] = f"unreachable: no answer within {self.timeout_s:g} s"
        return outcomes

    def _attempt(self, name: str) -> _Attempt:
        with self._lock:
            attempt = self._running.get(name)
            if attempt is None or attempt.done.is_set():
                attempt = self._running[name] = _Attempt(self.checks[name])
                threading.Thread(
                    target=attempt.run, name=f"embtune-readyz-{name}", daemon=True
                ).start()
            return attempt
