"""`EMBTUNE_TASK_TIME_LIMIT_S`: a hard limit on one run, enforced in every worker embtune starts.

Dramatiq's own `TimeLimit` middleware starts its watchdog thread on `process_boot`, an event only
the `dramatiq` command line emits; embtune builds its workers in-process (`embtune serve`,
`embtune worker`), so that watchdog never ran and no run was ever limited. This one lives with
the worker: its thread starts when the worker boots and ends when the worker shuts down. A run
past its deadline gets `TimeLimitExceeded` raised in its thread (the same asynchronous
exception dramatiq uses), which the runner records as `failed: time limit exceeded`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware, TimeLimitExceeded
from dramatiq.middleware.threading import raise_thread_exception

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.25


class RunTimeLimit(Middleware):
    """Raises `TimeLimitExceeded` in a worker thread whose message outlives its time limit
    (the actor's `time_limit` option, in milliseconds, else `time_limit_ms`)."""

    def __init__(self, time_limit_ms: int, interval_s: float = CHECK_INTERVAL_S) -> None:
        self.time_limit_ms = time_limit_ms
        self.interval_s = interval_s
        self._deadlines: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def actor_options(self) -> set[str]:
        return {"time_limit"}

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._watch, name="embtune-time-limit", daemon=True
            )
            self._thread.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        actor = broker.get_actor(message.actor_name)
        limit_ms = message.options.get("time_limit") or actor.options.get(
            "time_limit", self.time_limit_ms
        )
        with self._lock:
            self._deadlines[threading.get_ident()] = time.monotonic() + limit_ms / 1000

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        with self._lock:
            self._deadlines.pop(threading.get_ident(), None)

    after_skip_message = after_process_message

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            with self._lock:
                expired = [tid for tid, deadline in self._deadlines.items() if now >= deadline]
                for thread_id in expired:
                    del self._deadlines[thread_id]
            for thread_id in expired:
                log.warning("a run exceeded its time limit; interrupting worker thread %d",
                            thread_id)
                raise_thread_exception(thread_id, TimeLimitExceeded)
