"""Recovery: the database is the source of truth, the broker only a doorbell.

Runs at start-up and periodically, in the API process and in every worker; concurrent recoverers
are safe because each action is a guarded transition and duplicate messages are ignored by the
claim.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from embtune.artifacts import ArtifactStore
from embtune.domain.retry import RetryDecision, RetryPolicy
from embtune.domain.tasks import TaskStatus
from embtune.outage_log import OutageLog
from embtune.services.tasks import TaskService
from embtune.storage.db import Database, utcnow
from embtune.storage.ids import new_id
from embtune.storage.tasks_repo import TaskRepository

log = logging.getLogger(__name__)

SCAN_LIMIT = 500
REQUEUE_MESSAGE = "worker stopped heart-beating; re-queued"
# A staging directory is swept only once neither it nor its task has changed for this long, so
# a run that is just starting, or stopping after a cancel, is never raced.
STAGING_GRACE_S = 300.0


@dataclass
class RecoveryReport:
    resent: int = 0
    requeued: int = 0
    failed: int = 0
    staging_swept: int = 0
    checkpoints_swept: int = 0


class Recovery:
    def __init__(
        self,
        db: Database,
        tasks: TaskService,
        policy: RetryPolicy,
        *,
        heartbeat_timeout_s: float,
        undelivered_after_s: float,
        redeliver_after_s: float,
        artifacts: ArtifactStore | None = None,
        staging_grace_s: float = STAGING_GRACE_S,
    ) -> None:
        self.db = db
        self.artifacts = artifacts
        self.staging_grace_s = staging_grace_s
        self.tasks = tasks
        self.policy = policy
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.undelivered_after_s = undelivered_after_s
        self.redeliver_after_s = redeliver_after_s
        self.repo = TaskRepository()
        self._sweep_outage = OutageLog(log, "recovery's staging sweep")

    def resend_all_pending(self) -> int:
        """After an in-memory broker starts, every pending task's message is gone: send again."""
        with self.db.read() as session:
            pending = self.repo.all_pending(session, limit=100_000)
        return sum(self.tasks.send(t.id, t.message_id) for t in pending if t.message_id)

    def run_once(self) -> RecoveryReport:
        report = RecoveryReport()
        now = utcnow()
        with self.db.read() as session:
            undelivered = self.repo.undelivered(
                session,
                unsent_before=now - timedelta(seconds=self.undelivered_after_s),
                sent_before=now - timedelta(seconds=self.redeliver_after_s),
                limit=SCAN_LIMIT,
            )
            cutoff = now - timedelta(seconds=self.heartbeat_timeout_s)
            stale = self.repo.stale(session, heartbeat_before=cutoff, limit=SCAN_LIMIT)
        for task in undelivered:
            if task.message_id and self.tasks.send(task.id, task.message_id):
                report.resent += 1
        for task in stale:  # each guarded again: a beat may have arrived since the read
            if self.policy.decide(task.attempts) is RetryDecision.requeue:
                report.requeued += self._requeue(task.id, task.message_id, cutoff)
            else:
                report.failed += self._give_up(task.id, task.message_id, task.attempts, cutoff)
        try:
            report.staging_swept = self._sweep_staging()
            report.checkpoints_swept = self._sweep_checkpoints()
        except Exception as exc:  # a disk problem must not stop the task recovery above
            self._sweep_outage.failed(exc)
        else:
            self._sweep_outage.ok()
        if (report.resent or report.requeued or report.failed or report.staging_swept
                or report.checkpoints_swept):
            log.info("recovery: %s", report)
        return report

    def _sweep_staging(self) -> int:
        """Remove the staging directories of runs that are over: a killed worker or server
        never cleaned up after its run. A directory `<task>-<run>` is left alone while the
        task is processing under that run's message id, and until both the directory and the
        task have been unchanged for `staging_grace_s`."""
        if self.artifacts is None:
            return 0
        candidates = self.artifacts.staging_runs(time.time() - self.staging_grace_s)
        if not candidates:
            return 0
        settled = utcnow() - timedelta(seconds=self.staging_grace_s)
        swept = 0
        for task_id, run_id, path in candidates:
            with self.db.read() as session:
                task = self.repo.get(session, task_id)
            if task is not None and (
                (task.status is TaskStatus.processing and task.message_id == run_id)
                or task.updated_at > settled
            ):
                continue
            log.info("recovery: removing %s, left behind by a run that is over", path)
            self.artifacts.discard(path)
            swept += 1
        return swept

    def _sweep_checkpoints(self) -> int:
        """Remove the training checkpoints of tasks that will never resume: gone, or over
        (done, failed, refused, canceled — a task canceled while pending never runs again to
        delete its own). A pending or processing task keeps them; so does a task that changed
        within `staging_grace_s` (a restarted task's new run may be writing there)."""
        if self.artifacts is None:
            return 0
        candidates = self.artifacts.checkpoint_tasks(time.time() - self.staging_grace_s)
        if not candidates:
            return 0
        settled = utcnow() - timedelta(seconds=self.staging_grace_s)
        swept = 0
        for task_id in candidates:
            with self.db.read() as session:
                task = self.repo.get(session, task_id)
            if task is not None and (not task.status.is_terminal or task.updated_at > settled):
                continue
            log.info("recovery: removing the checkpoints of task %s, which will not resume",
                     task_id)
            self.artifacts.discard_checkpoints(task_id)
            swept += 1
        return swept

    def _requeue(self, task_id: str, old_message_id: str | None, cutoff: datetime) -> int:
        message_id = new_id()
        with self.db.transaction() as session:
            # the dead run's figures would read as live until the next claim: the progress
            # says it was re-queued
            task = self.repo.requeue_if_stale(
                session, task_id, old_message_id, cutoff, message_id, REQUEUE_MESSAGE
            )
        if task is None:
            return 0
        self.tasks.send(task_id, message_id)
        return 1

    def _give_up(
        self, task_id: str, message_id: str | None, attempts: int, cutoff: datetime
    ) -> int:
        detail = self.policy.give_up_detail(attempts)
        with self.db.transaction() as session:
            task = self.repo.give_up_if_stale(
                session, task_id, message_id, cutoff, detail, utcnow()
            )
        return int(task is not None)


class PeriodicRecovery:
    """A daemon thread calling `Recovery.run_once` every `interval_s` until stopped."""

    def __init__(self, recovery: Recovery, interval_s: float) -> None:
        self.recovery = recovery
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="embtune-recovery", daemon=True)
        self._outage = OutageLog(log, "recovery pass")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            try:
                self.recovery.run_once()
            except Exception as exc:  # the database or broker is away: the next pass retries
                self._outage.failed(exc)
            else:
                self._outage.ok()
            if self._stop.wait(self.interval_s):
                return
