"""One log line per change of state for loops that retry through an outage, not one per attempt.

A heartbeat, a recovery pass or the abort watcher retries every second or faster while the
database or the broker is away; logging each failure with its traceback turned a six-second
blip into thousands of lines that buried everything else. `OutageLog` keeps the information and
drops the repetition:

- the first failure: one WARNING with its traceback (what went wrong, once);
- further failures of the same kind: nothing; a failure of a new kind: one line (with its
  traceback the first time that kind is seen in this outage);
- a long outage: one reminder line every `remind_every_s`, so a log never looks healthy while
  the loop is not;
- the first success after failures: one WARNING line, "<what> back after 6.1 s (24 attempts
  failed)" — at the failure's level, so whoever saw the outage also sees its end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

REMIND_EVERY_S = 300.0


def _summary(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class OutageLog:
    """State-change logging for one retry loop (thread-safe; share it between loops that fail
    for the same reason if one traceback should stand for all of them)."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        level: int = logging.WARNING,
        remind_every_s: float = REMIND_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.what = what
        self.level = level
        self.remind_every_s = remind_every_s
        self.clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None  # start of the current outage
        self._failures = 0
        self._kind: type[BaseException] | None = None
        self._kinds_seen: set[type[BaseException]] = set()
        self._reminded_at = 0.0

    @property
    def failing(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        """Record one failed attempt; logs only if it starts an outage or changes its kind."""
        with self._lock:
            now = self.clock()
            kind = type(exc)
            if self._since is None:
                self._since, self._reminded_at, self._failures = now, now, 1
                self._kind, self._kinds_seen = kind, {kind}
                self.logger.log(
                    self.level, "%s failed, retrying (repeats are not logged until it works): %s",
                    self.what, _summary(exc), exc_info=exc,
                )
                return
            self._failures += 1
            if kind is not self._kind:
                first_of_kind = kind not in self._kinds_seen
                self._kind = kind
                self._kinds_seen.add(kind)
                self.logger.log(
                    self.level, "%s still failing, now with %s",
                    self.what, _summary(exc), exc_info=exc if first_of_kind else None,
                )
            elif now - self._reminded_at >= self.remind_every_s:
                self._reminded_at = now
                self.logger.log(
                    self.level, "%s still failing after %.0f s (%d attempts): %s",
                    self.what, now - self._since, self._failures, _summary(exc),
                )

    def ok(self) -> None:
        """Record a successful attempt; logs once if it ends an outage."""
        if self._since is None:  # the common case: nothing to do, no lock
            return
        with self._lock:
            if self._since is None:
                return
            took = self.clock() - self._since
            failures, self._since, self._kind = self._failures, None, None
            self._failures = 0
            self.logger.log(
                self.level, "%s back after %.1f s (%d attempt%s failed)",
                self.what, took, failures, "" if failures == 1 else "s",
            )
