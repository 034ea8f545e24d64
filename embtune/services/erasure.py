"""Erasure: every session of one user, with its results and events, on the user's request;
and the audit trail that records erasures and retention's prunes.

Erasure deletes in transactions of `retention_chunk_sessions` sessions each (set-based deletes),
so a user with a million sessions never holds one long transaction against ingestion. The first
chunk's transaction writes the audit row and every later one updates its counts, so the trail
always matches what was committed; the last marks it `complete`. Interrupted, the request can
simply be sent again: it deletes what is left.

The audit row records the actor and the counts, never the user id (keeping it "to prove the
erasure" would keep the very datum erased) nor any query text.
"""

from __future__ import annotations

from embtune.config import Settings
from embtune.domain.audit import AuditAction, AuditEvent, DeletedCounts
from embtune.storage.audit_repo import AuditRepository
from embtune.storage.db import Database, utcnow
from embtune.storage.retention_repo import RetentionRepository


class ErasureService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.chunk = settings.retention_chunk_sessions
        self.repo = RetentionRepository()
        self.audit = AuditRepository()

    def erase_user(self, user_id: str, actor: str) -> DeletedCounts:
        """Delete every session of `user_id` with its results and events; what was deleted.

        An unknown user (or one already erased) answers zeros, not 404: erasure must be
        idempotent, so a client whose first request timed out can repeat it and get a success,
        and a 404 would tell a caller which user ids exist. The request is audited either way."""
        total, chunks, audit_id = DeletedCounts(), 0, None
        while True:
            with self.db.transaction() as session:
                ids = self.repo.user_session_ids(session, user_id, self.chunk)
                total += self.repo.delete_sessions(session, ids)
                chunks += 1 if ids else 0
                complete = len(ids) < self.chunk
                detail = {**total.as_dict(), "chunks": chunks, "complete": complete}
                if audit_id is None:
                    audit_id = self.audit.add(
                        session,
                        action=AuditAction.erase_user.value,
                        actor=actor,
                        detail=detail,
                        now=utcnow(),
                    )
                else:
                    self.audit.set_detail(session, audit_id, detail)
            if complete:
                return total


class AuditTrail:
    """Reads the audit trail (newest first)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.audit = AuditRepository()

    def page(
        self, *, offset: int, limit: int, action: str | None = None
    ) -> tuple[list[AuditEvent], int]:
        with self.db.read() as session:
            return self.audit.page(session, offset=offset, limit=limit, action=action)

