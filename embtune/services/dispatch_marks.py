"""Recording that a task's message went out, in batches, off the request path.

`dispatched_at` only tells recovery which pending tasks it need not resend. Writing it in its own
transaction after every send cost a create as much as the insert itself (a second commit and WAL
flush); here the marks of everything sent in the last few milliseconds go into one UPDATE. A mark
that is never written (the process died, the database was down) is harmless: recovery resends a
task unmarked for `undelivered_after_s`, and the worker's claim ignores the duplicate message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from embtune.outage_log import OutageLog
from embtune.storage.db import Database, utcnow
from embtune.storage.tasks_repo import TaskRepository

log = logging.getLogger(__name__)

MAX_PENDING = 100_000  # beyond this a mark is dropped: recovery would merely resend the task
MAX_BATCH = 500
RETRY_AFTER_S = 1.0


class DispatchMarks:
    """Collects (task id, message id) pairs and writes them from one daemon thread."""

    def __init__(self, db: Database, *, gather_s: float = 0.05) -> None:
        self.db = db
        self.gather_s = gather_s
        self.tasks = TaskRepository()
        self._pending: deque[tuple[str, str]] = deque()
        self._wake = threading.Condition()
        self._flushing = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._outage = OutageLog(log, "recording dispatched tasks")

    def add(self, task_id: str, message_id: str) -> None:
        with self._wake:
            if len(self._pending) >= MAX_PENDING:
                log.warning("dispatch marks backlog full; task %s will be resent", task_id)
                return
            self._pending.append((task_id, message_id))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="embtune-dispatch-marks", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def flush(self) -> bool:
        """Write everything collected so far — including a batch the thread is writing at this
        moment: flushes run one at a time, so on return every earlier mark is committed.
        False (marks kept) when the database failed."""
        with self._flushing:
            while True:
                with self._wake:
                    take = min(MAX_BATCH, len(self._pending))
                    batch = [self._pending.popleft() for _ in range(take)]
                if not batch:
                    return True
                try:
                    with self.db.transaction() as session:
                        self.tasks.mark_dispatched_many(session, batch, utcnow())
                except Exception as exc:  # kept and retried every RETRY_AFTER_S
                    self._outage.failed(exc)
                    with self._wake:
                        self._pending.extendleft(reversed(batch))
                    return False
                self._outage.ok()

    def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
            # let a burst gather: one UPDATE for many sends
            time.sleep(self.gather_s)
            if not self.flush():
                with self._wake:
                    self._wake.wait(RETRY_AFTER_S)
