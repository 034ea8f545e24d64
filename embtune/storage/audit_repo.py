"""The audit trail (`audit_events`) <-> `AuditEvent`.

Written inside the transaction whose deletion it records, so the trail never says more or less
than what was committed: an erasure interrupted between two chunks leaves a row that counts
exactly the chunks that were deleted (`complete: false`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from embtune.domain.audit import AuditEvent
from embtune.storage.tables import AuditEventRow


class AuditRepository:
    """Stateless; every method works inside the caller's transaction."""

    def add(
        self, session: Session, *, action: str, actor: str, detail: dict[str, Any], now: datetime
    ) -> int:
        return int(
            session.execute(
                insert(AuditEventRow)
                .values(action=action, actor=actor, detail=detail, created_at=now)
                .returning(AuditEventRow.id)
            ).scalar_one()
        )

    def set_detail(self, session: Session, event_id: int, detail: dict[str, Any]) -> None:
        """The running counts of a deletion that spans several transactions."""
        session.execute(
            update(AuditEventRow)
            .where(AuditEventRow.id == event_id)
            .values(detail=detail)
            .execution_options(synchronize_session=False)
        )

    def page(
        self, session: Session, *, offset: int, limit: int, action: str | None = None
    ) -> tuple[list[AuditEvent], int]:
        """Newest first (id as tie-break: several events may share a timestamp)."""
        query = select(AuditEventRow)
        total_query = select(func.count()).select_from(AuditEventRow)
        if action is not None:
            query = query.where(AuditEventRow.action == action)
            total_query = total_query.where(AuditEventRow.action == action)
        rows = session.scalars(
            query.order_by(AuditEventRow.created_at.desc(), AuditEventRow.id.desc())
            .offset(offset)
            .limit(limit)
        ).all()
        total = session.scalar(total_query) or 0
        return [
            AuditEvent(r.id, r.action, r.actor, dict(r.detail), r.created_at) for r in rows
        ], total
