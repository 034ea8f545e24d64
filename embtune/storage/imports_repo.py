"""An import task's committed progress (`import_progress`) and its rejected rows
(`import_rejections`).

Both are written in the transaction that stores a chunk's rows, so the resume point, the counts
and the report always describe exactly what was committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from embtune.domain.imports import ImportProgress, Rejection
from embtune.storage.tables import ImportProgressRow, ImportRejectionRow
from embtune.storage.upsert import dialect_name, insert_on_conflict

PROGRESS = ImportProgressRow.__table__
REJECTIONS = ImportRejectionRow.__table__
# Rejected rows per INSERT: 4 bound values each, far below SQLite's parameter limit.
REJECTION_BATCH = 2000
FIELD_CHARS = 300  # the column's width


class ImportRepository:
    """Stateless; every method works inside the caller's transaction."""

    def progress(self, session: Session, task_id: str) -> ImportProgress | None:
        row = session.execute(select(PROGRESS).where(PROGRESS.c.task_id == task_id)).first()
        if row is None:
            return None
        return ImportProgress(
            position=dict(row.position or {}),
            rows_read=row.rows_read,
            bytes_read=row.bytes_read,
            chunks=row.chunks,
            accepted=row.accepted,
            duplicate=row.duplicate,
            conflict=row.conflict,
            rejected=row.rejected,
        )

    def save_progress(
        self, session: Session, task_id: str, progress: ImportProgress, now: datetime
    ) -> None:
        """Insert or replace the task's one progress row."""
        values = {
            "position": progress.position,
            "rows_read": progress.rows_read,
            "bytes_read": progress.bytes_read,
            "chunks": progress.chunks,
            **progress.counts(),
            "updated_at": now,
        }
        stmt = insert_on_conflict(dialect_name(session), PROGRESS).values(
            task_id=task_id, **values
        )
        session.execute(stmt.on_conflict_do_update(index_elements=["task_id"], set_=values))

    def add_rejections(
        self, session: Session, task_id: str, rejections: Sequence[Rejection]
    ) -> None:
        """Multi-row inserts; a row already reported (the same task and row) is kept as it is."""
        for start in range(0, len(rejections), REJECTION_BATCH):
            batch = rejections[start : start + REJECTION_BATCH]
            stmt = insert_on_conflict(dialect_name(session), REJECTIONS).values([
                {"task_id": task_id, "row": r.row,
                 "field": r.field[:FIELD_CHARS] if r.field else None,
                 "reason": r.reason, "excerpt": r.excerpt}
                for r in batch
            ])
            session.execute(stmt.on_conflict_do_nothing(index_elements=["task_id", "row"]))

    def rejections(
        self, session: Session, task_id: str, *, after_row: int, limit: int
    ) -> list[Rejection]:
        """The next `limit` rejected rows after `after_row`, in row order (a keyset page: the
        report is streamed page by page, never read whole)."""
        rows = session.execute(
            select(REJECTIONS.c.row, REJECTIONS.c.field, REJECTIONS.c.reason,
                   REJECTIONS.c.excerpt)
            .where(REJECTIONS.c.task_id == task_id, REJECTIONS.c.row > after_row)
            .order_by(REJECTIONS.c.row)
            .limit(limit)
        ).all()
        return [Rejection(row=r.row, field=r.field, reason=r.reason, excerpt=r.excerpt)
                for r in rows]
