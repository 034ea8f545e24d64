"""dramatiq-abort's middleware with a watcher thread that ends with its worker.

`Abortable` starts a watcher thread when a worker boots and never stops it: every worker a
process starts and stops (an API restart in-process, the test suite's thousands of apps) left a
thread polling the abort backend — a closed database or Redis — for the life of the process.
Here each worker's watcher has a stop flag set when that worker shuts down, and is joined.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import dramatiq
from dramatiq.middleware.threading import current_platform, supported_platforms
from dramatiq_abort import Abortable

# the watcher's longest wait is one `wait_many` (the middleware's `wait_timeout`, 1 s default)
JOIN_SLACK_S = 5.0


class StoppableAbortable(Abortable):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._watchers: dict[int, tuple[threading.Event, threading.Thread]] = {}

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if current_platform not in supported_platforms:  # the library only warns, too
            warnings.warn(
                f"Abortable cannot kill threads on this platform ({current_platform!r})",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        stop = threading.Event()
        thread = threading.Thread(
            target=self._watch, args=(stop,), name="embtune-abort-watcher", daemon=True
        )
        self._watchers[id(worker)] = (stop, thread)
        thread.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        watcher = self._watchers.pop(id(worker), None)
        if watcher is not None:
            stop, thread = watcher
            stop.set()
            thread.join(timeout=self.wait_timeout / 1000 + JOIN_SLACK_S)

    def _watch(self, stop: threading.Event) -> None:
        """The library's `_watcher` loop, until `stop` is set."""
        while not stop.is_set():
            try:
                self._get_abort_requests()
                self.manager.abort_pending()
            except Exception:
                self.logger.exception("Unhandled error while running the abort watcher.")
                stop.wait(self.wait_timeout / 1000)
