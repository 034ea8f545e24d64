"""Retention: released batches older than `clickstream_retention_days` lose their sessions.

A pass, run in the background every `retention_interval_s` (and on demand), prunes each batch in
two steps:

1. **The decision**, one transaction under the batch row's lock (`FOR UPDATE`): the batch is
   still `released`, still older than the limit, and no task needs it (a pending or processing
   task of any kind names it, or it is the batch of its model's newest done fine-tuning task);
   then it is marked `pruned` and the audit row is written. The check and the mark are one step
   for everyone who changes the batch, so no task that committed before can lose its batch.
2. **The deletion**, in transactions of `retention_chunk_sessions` sessions each (set-based
   deletes of their events, results and sessions), each updating the audit row's counts; the
   one that finds no session left marks the row `complete`.

The mark comes *before* the first deletion, not with the last one, on purpose: a task that
names the batch after the decision (created or restarted meanwhile) finds it `pruned` and its
run is refused with a clear detail, where marking it last would let such a task train, without
a word, on whatever part of the batch was not deleted yet. A pass that dies between two chunks
leaves a `pruned` batch that still holds sessions; the next pass finishes it first (a new audit
row, `resumed: true`).

Several processes may run passes at once (the API and each worker): the decision is guarded by
the lock and the status, and chunks of one batch select and lock their sessions, so a session
is deleted and counted once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session as DbSession

from embtune.config import Settings
from embtune.domain.audit import RETENTION_ACTOR, AuditAction, DeletedCounts
from embtune.outage_log import OutageLog
from embtune.storage.audit_repo import AuditRepository
from embtune.storage.db import Database, utcnow
from embtune.storage.retention_repo import RetentionRepository

log = logging.getLogger(__name__)

# Batches a pass looks at, at most; the next pass takes the rest (batches are few: one per run).
BATCHES_PER_PASS = 100


@dataclass
class RetentionReport:
    batches: int = 0  # batches pruned (or finished) by this pass
    kept: int = 0  # batches old enough to prune, kept because a task needs them
    deleted: DeletedCounts = field(default_factory=DeletedCounts)
    retention_days: float = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "kept": self.kept,
            **self.deleted.as_dict(),
            "retention_days": self.retention_days,
        }


class RetentionService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.days = settings.clickstream_retention_days
        self.chunk = settings.retention_chunk_sessions
        self.repo = RetentionRepository()
        self.audit = AuditRepository()

    @property
    def enabled(self) -> bool:
        return self.days > 0

    def run_once(
        self, now: datetime | None = None, should_stop: Callable[[], bool] = lambda: False
    ) -> RetentionReport:
        """One pass: finish interrupted prunes, then prune what is old enough. With retention
        off (0 days) only interrupted prunes are finished: a decision taken is kept.
        `should_stop` is asked between chunks; a pass stopped there is finished by the next."""
        report = RetentionReport(retention_days=self.days)
        with self.db.read() as session:
            unfinished = self.repo.unfinished_prunes(session, limit=BATCHES_PER_PASS)
        for batch_id in unfinished:
            audit_id = self._audit_row(batch_id, resumed=True)
            report.deleted += self._delete_batch(batch_id, audit_id, True, should_stop)
            report.batches += 1
        if not self.enabled:
            return report
        cutoff = (now or utcnow()) - timedelta(days=self.days)
        with self.db.read() as session:
            candidates = self.repo.prune_candidates(
                session, released_before=cutoff, limit=BATCHES_PER_PASS
            )
            report.kept = self.repo.needed_batches(session, released_before=cutoff)
        for batch_id in candidates:
            if should_stop():
                break
            audit_id = self._decide(batch_id, cutoff)
            if audit_id is not None:
                report.deleted += self._delete_batch(batch_id, audit_id, False, should_stop)
                report.batches += 1
        if report.batches:
            log.info("retention pruned %d batch(es): %s", report.batches, report.as_dict())
        return report

    def _decide(self, batch_id: str, cutoff: datetime) -> int | None:
        """Step 1 (see the module docstring); the audit row's id when the batch was marked."""
        now = utcnow()
        with self.db.transaction() as session:
            if not self.repo.decide_prune(session, batch_id, released_before=cutoff, now=now):
                return None
            return self._add_audit(session, batch_id, now, resumed=False)

    def _audit_row(self, batch_id: str, *, resumed: bool) -> int:
        with self.db.transaction() as session:
            return self._add_audit(session, batch_id, utcnow(), resumed=resumed)

    def _add_audit(self, session: DbSession, batch_id: str, now: datetime, *, resumed: bool) -> int:
        return self.audit.add(
            session,
            action=AuditAction.prune_batch.value,
            actor=RETENTION_ACTOR,
            detail=_detail(batch_id, DeletedCounts(), 0, complete=False, resumed=resumed),
            now=now,
        )

    def _delete_batch(
        self, batch_id: str, audit_id: int, resumed: bool, should_stop: Callable[[], bool]
    ) -> DeletedCounts:
        """Step 2: chunk after chunk until a transaction finds fewer sessions than a chunk."""
        total, chunks = DeletedCounts(), 0
        while not should_stop():
            with self.db.transaction() as session:
                ids = self.repo.batch_session_ids(session, batch_id, self.chunk)
                total += self.repo.delete_sessions(session, ids)
                chunks += 1 if ids else 0
                complete = len(ids) < self.chunk
                self.audit.set_detail(
                    session,
                    audit_id,
                    _detail(batch_id, total, chunks, complete=complete, resumed=resumed),
                )
            if complete:
                break
        return total


def _detail(
    batch_id: str, counts: DeletedCounts, chunks: int, *, complete: bool, resumed: bool
) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        **counts.as_dict(),
        "chunks": chunks,
        "complete": complete,
        "resumed": resumed,
    }


class PeriodicRetention:
    """A daemon thread calling `RetentionService.run_once` every `interval_s` until stopped
    (the shape of `services.recovery.PeriodicRecovery`)."""

    def __init__(self, retention: RetentionService, interval_s: float) -> None:
        self.retention = retention
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="embtune-retention", daemon=True)
        self._outage = OutageLog(log, "retention pass")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.retention.run_once(should_stop=self._stop.is_set)
            except Exception as exc:  # the database is away: the next pass retries
                self._outage.failed(exc)
            else:
                self._outage.ok()
            if self._stop.wait(self.interval_s):
                return
