"""Deleting clickstream data: retention's batches and erasure's users, in bounded chunks.

Every deletion is set-based: a chunk's session ids are selected (and locked) once, then their
events, results and sessions go in three `DELETE … WHERE session_id IN (…)` statements per id
list, each counted. Explicit deletes rather than the foreign keys' cascades, so the counts the
audit trail records are exact. The ids are locked `FOR UPDATE` in session-id order first, so an
event pushed onto one of them meanwhile waits, then finds its session gone (404), and is never
half-deleted with it.

Batch locks: the prune *decision* locks the batch row `FOR UPDATE` and takes no session lock,
while an ingest of events locks its session, then the batch `FOR SHARE`; the chunk deletions
that follow a decision lock sessions only. Neither order can dead-lock the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from embtune.domain.audit import DeletedCounts
from embtune.domain.clickstream import BatchStatus
from embtune.domain.tasks import TaskKind, TaskStatus
from embtune.storage.items_repo import ID_CHUNK
from embtune.storage.tables import (
    BatchRow,
    ClickEventRow,
    SearchSessionRow,
    SessionResultRow,
    TaskRow,
)

LIVE = (TaskStatus.pending.value, TaskStatus.processing.value)


def _needed_by_a_task(batch_id: Any) -> Any:
    """A task names the batch and still needs it: a pending or processing task of any kind, or
    the newest done fine-tuning task (by creation) among its model's done tasks that trained on
    a batch — the data the model's latest iteration came from stays inspectable and can be
    tuned on again. Failed, refused and canceled tasks do not hold a batch: restarting one whose
    batch was pruned is refused with a clear detail instead."""
    task, newer = aliased(TaskRow), aliased(TaskRow)
    fine_tuning, done = TaskKind.fine_tuning.value, TaskStatus.done.value
    newest_done = and_(
        task.kind == fine_tuning,
        task.status == done,
        ~exists().where(
            newer.kind == fine_tuning,
            newer.status == done,
            newer.batch_id.is_not(None),
            newer.embedding_model_id == task.embedding_model_id,
            or_(
                newer.created_at > task.created_at,
                and_(newer.created_at == task.created_at, newer.id > task.id),
            ),
        ),
    )
    return exists().where(task.batch_id == batch_id, or_(task.status.in_(LIVE), newest_done))


class RetentionRepository:
    """Stateless; every method works inside the caller's transaction."""

    # -- retention ------------------------------------------------------------------------------
    def prune_candidates(
        self, session: Session, *, released_before: datetime, limit: int
    ) -> list[str]:
        """Released batches older than the limit that no task needs, oldest first. A hint
        only: the decision re-checks under the batch's lock (`decide_prune`)."""
        return list(
            session.scalars(
                select(BatchRow.id)
                .where(
                    BatchRow.status == BatchStatus.released.value,
                    BatchRow.released_at < released_before,
                    ~_needed_by_a_task(BatchRow.id),
                )
                .order_by(BatchRow.released_at, BatchRow.id)
                .limit(limit)
            )
        )

    def needed_batches(self, session: Session, *, released_before: datetime) -> int:
        """How many batches old enough to prune are kept because a task needs them."""
        return (
            session.scalar(
                select(func.count())
                .select_from(BatchRow)
                .where(
                    BatchRow.status == BatchStatus.released.value,
                    BatchRow.released_at < released_before,
                    _needed_by_a_task(BatchRow.id),
                )
            )
            or 0
        )

    def decide_prune(
        self, session: Session, batch_id: str, *, released_before: datetime, now: datetime
    ) -> bool:
        """Mark the batch `pruned` if it still may be, under its row lock; True when marked.

        The lock (`FOR UPDATE`) makes the check and the mark one step for everyone who
        changes the batch: a release, and an ingest of events into it, wait for it. A task
        that names the batch and commits before this check keeps it; one that commits after
        names a pruned batch, and its run is refused with a clear detail — never trains on a
        half-deleted one, since the mark comes before the first deletion."""
        row = session.execute(
            select(BatchRow.status, BatchRow.released_at)
            .where(BatchRow.id == batch_id)
            .with_for_update()
        ).first()
        if row is None or row.status != BatchStatus.released.value:
            return False
        if row.released_at is None or row.released_at >= released_before:
            return False
        if session.scalar(select(_needed_by_a_task(batch_id))):
            return False
        session.execute(
            update(BatchRow)
            .where(BatchRow.id == batch_id)
            .values(status=BatchStatus.pruned.value, pruned_at=now)
            .execution_options(synchronize_session=False)
        )
        return True

    def unfinished_prunes(self, session: Session, *, limit: int) -> list[str]:
        """Pruned batches that still hold sessions: a pass was interrupted after its decision."""
        has_sessions = exists().where(SearchSessionRow.batch_id == BatchRow.id)
        return list(
            session.scalars(
                select(BatchRow.id)
                .where(BatchRow.status == BatchStatus.pruned.value, has_sessions)
                .order_by(BatchRow.pruned_at, BatchRow.id)
                .limit(limit)
            )
        )

    def batch_session_ids(self, session: Session, batch_id: str, limit: int) -> list[str]:
        """Up to `limit` of the batch's sessions, locked (see the module docstring)."""
        return list(
            session.scalars(
                select(SearchSessionRow.session_id)
                .where(SearchSessionRow.batch_id == batch_id)
                .order_by(SearchSessionRow.session_id)
                .limit(limit)
                .with_for_update()
            )
        )

    # -- erasure --------------------------------------------------------------------------------
    def user_session_ids(self, session: Session, user_id: str, limit: int) -> list[str]:
        """Up to `limit` of the user's sessions in any batch, locked."""
        return list(
            session.scalars(
                select(SearchSessionRow.session_id)
                .where(SearchSessionRow.user_id == user_id)
                .order_by(SearchSessionRow.session_id)
                .limit(limit)
                .with_for_update()
            )
        )

    # -- both -----------------------------------------------------------------------------------
    def delete_sessions(self, session: Session, session_ids: Sequence[str]) -> DeletedCounts:
        """Delete the sessions with their events and results; what each statement removed."""
        counts = DeletedCounts()
        for start in range(0, len(session_ids), ID_CHUNK):
            chunk = list(session_ids[start : start + ID_CHUNK])
            events = session.execute(
                delete(ClickEventRow).where(ClickEventRow.session_id.in_(chunk))
            ).rowcount
            results = session.execute(
                delete(SessionResultRow).where(SessionResultRow.session_id.in_(chunk))
            ).rowcount
            sessions = session.execute(
                delete(SearchSessionRow).where(SearchSessionRow.session_id.in_(chunk))
            ).rowcount
            counts += DeletedCounts(sessions or 0, results or 0, events or 0)
        return counts
