"""Search sessions, their results and events, and batches <-> domain objects.

Locking protocol (PostgreSQL; SQLite write transactions are serialized by `BEGIN IMMEDIATE`):
whoever adds to a batch (a new session, events, an irrelevant mark) holds the batch row
`FOR SHARE` until it commits, and a release holds it `FOR UPDATE`. A release therefore waits for
every ingest already writing into the batch, and an ingest arriving during a release waits for
it, then sees the batch released and moves on to the new open one. No session lands in a frozen
batch, none is counted in two. Events and irrelevant marks lock their session row
`FOR UPDATE` first, then the batch `FOR SHARE` (the batch's status then stays true until commit,
so an event is flagged `late` exactly when its batch was already released); a release takes no
session lock, so the order cannot dead-lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from embtune.clickstream.sessions import SearchSession
from embtune.domain.clickstream import (
    Batch,
    BatchStatus,
    SearchResult,
    SessionEvent,
    SessionRecord,
)
from embtune.errors import Conflict
from embtune.storage.ids import new_id
from embtune.storage.items_repo import ID_CHUNK
from embtune.storage.tables import (
    BatchRow,
    ClickEventRow,
    SearchSessionRow,
    SessionResultRow,
    TaskRow,
)
from embtune.storage.upsert import dialect_name, insert_on_conflict

CLICK = "click"

# Rows per multi-row INSERT: keeps bound parameters far below SQLite's limit (32766) whatever
# the configured size bounds.
ROW_CHUNK = 1000

# Re-reads of the open batch before giving up; each miss means a concurrent release or a
# concurrent creation committed in between, so two or three are the most ever needed.
_OPEN_BATCH_ATTEMPTS = 10


def _insert(session: Session) -> Any:
    """This session's database's `INSERT … ON CONFLICT` construct, to call on a table."""
    return partial(insert_on_conflict, dialect_name(session))


class ClickstreamRepository:
    """Stateless; every method works inside the caller's transaction."""

    # -- batches --------------------------------------------------------------------------------
    def open_batch_id(self, session: Session, *, exclusive: bool) -> str | None:
        """The open batch's id, locked `FOR UPDATE` (exclusive) or `FOR SHARE`.

        On PostgreSQL a row released while we waited for its lock is skipped (the status is
        re-checked after the wait), so None can mean "just released": callers read again.
        """
        return session.scalar(
            select(BatchRow.id)
            .where(BatchRow.status == BatchStatus.open.value)
            .with_for_update(read=not exclusive)
        )

    def join_open_batch(self, session: Session, now: datetime) -> str:
        """The open batch, created if there is none, held `FOR SHARE` until commit."""
        for _ in range(_OPEN_BATCH_ATTEMPTS):
            batch_id = self.open_batch_id(session, exclusive=False)
            if batch_id is not None:
                return batch_id
            # Loses quietly to a concurrent creator (the partial unique index on open status);
            # the next read, a new statement, sees the winner's row.
            self.create_open_batch(session, now)
        raise Conflict("the open batch kept changing during this request; try again")

    def create_open_batch(self, session: Session, now: datetime) -> None:
        session.execute(
            _insert(session)(BatchRow)
            .values(id=new_id(), status=BatchStatus.open.value, created_at=now)
            .on_conflict_do_nothing()
        )

    def lock_batch(self, session: Session, batch_id: str) -> BatchStatus | None:
        """`FOR SHARE`: the status read stays true until commit (no release in between)."""
        status = session.scalar(
            select(BatchRow.status).where(BatchRow.id == batch_id).with_for_update(read=True)
        )
        return BatchStatus(status) if status else None

    def mark_released(self, session: Session, batch_id: str, now: datetime) -> None:
        session.execute(
            update(BatchRow)
            .where(BatchRow.id == batch_id, BatchRow.status == BatchStatus.open.value)
            .values(status=BatchStatus.released.value, released_at=now)
            .execution_options(synchronize_session=False)
        )

    def count_sessions(self, session: Session, batch_id: str) -> int:
        return (
            session.scalar(
                select(func.count())
                .select_from(SearchSessionRow)
                .where(SearchSessionRow.batch_id == batch_id)
            )
            or 0
        )

    def get_batch(self, session: Session, batch_id: str) -> Batch | None:
        row = session.get(BatchRow, batch_id, populate_existing=True)
        return self._with_counts(session, [row])[0] if row else None

    def page_batches(
        self, session: Session, *, offset: int, limit: int
    ) -> tuple[list[Batch], int]:
        """Newest first, id as tie-break, so offsets are stable between pages."""
        rows = session.scalars(
            select(BatchRow)
            .order_by(BatchRow.created_at.desc(), BatchRow.id.desc())
            .offset(offset)
            .limit(limit)
        ).all()
        total = session.scalar(select(func.count()).select_from(BatchRow)) or 0
        return self._with_counts(session, list(rows)), total

    def _with_counts(self, session: Session, rows: Sequence[BatchRow]) -> list[Batch]:
        """Counts and task ids by four grouped queries for the whole page rather than four
        per batch."""
        ids = [row.id for row in rows]
        sessions: dict[str, tuple[int, int]] = {}
        clicks: dict[str, int] = {}
        late: dict[str, int] = {}
        tasks: dict[str, list[str]] = {}
        if ids:
            for batch_id, total, irrelevant in session.execute(
                select(
                    SearchSessionRow.batch_id,
                    func.count(),
                    func.sum(case((SearchSessionRow.irrelevant, 1), else_=0)),
                )
                .where(SearchSessionRow.batch_id.in_(ids))
                .group_by(SearchSessionRow.batch_id)
            ):
                sessions[batch_id] = (total, int(irrelevant or 0))
            clicks = dict(
                session.execute(
                    select(SearchSessionRow.batch_id, func.count(ClickEventRow.id))
                    .join(ClickEventRow, ClickEventRow.session_id == SearchSessionRow.session_id)
                    .where(SearchSessionRow.batch_id.in_(ids), ClickEventRow.event_type == CLICK)
                    .group_by(SearchSessionRow.batch_id)
                ).tuples().all()
            )
            late = dict(
                session.execute(
                    select(SearchSessionRow.batch_id, func.count(ClickEventRow.id))
                    .join(ClickEventRow, ClickEventRow.session_id == SearchSessionRow.session_id)
                    .where(SearchSessionRow.batch_id.in_(ids), ClickEventRow.late)
                    .group_by(SearchSessionRow.batch_id)
                ).tuples().all()
            )
            for task_id, batch_id in session.execute(
                select(TaskRow.id, TaskRow.batch_id)
                .where(TaskRow.batch_id.is_not(None), TaskRow.batch_id.in_(ids))
                .order_by(TaskRow.created_at, TaskRow.id)
            ).tuples():
                tasks.setdefault(batch_id, []).append(task_id)
        return [
            Batch(
                id=row.id,
                status=BatchStatus(row.status),
                created_at=row.created_at,
                released_at=row.released_at,
                sessions_count=sessions.get(row.id, (0, 0))[0],
                clicks_count=clicks.get(row.id, 0),
                irrelevant_count=sessions.get(row.id, (0, 0))[1],
                late_events=late.get(row.id, 0),
                task_ids=tuple(tasks.get(row.id, ())),
            )
            for row in rows
        ]

    # -- sessions -------------------------------------------------------------------------------
    def insert_session(
        self, session: Session, values: dict[str, Any], results: Sequence[dict[str, Any]]
    ) -> bool:
        """Insert unless the session id exists; True when this call inserted.

        `ON CONFLICT DO NOTHING` makes concurrent posts of one session atomic: one wins and
        the others compare their body with the winner's.
        """
        stmt = _insert(session)(SearchSessionRow).values(**values).on_conflict_do_nothing()
        inserted = session.execute(stmt.returning(SearchSessionRow.session_id)).scalar()
        if inserted is None:
            return False
        rows = [{"session_id": values["session_id"], **result} for result in results]
        for start in range(0, len(rows), ROW_CHUNK):
            session.execute(
                _insert(session)(SessionResultRow).values(rows[start : start + ROW_CHUNK])
            )
        return True

    def session_row(self, session: Session, session_id: str) -> SearchSessionRow | None:
        return session.get(SearchSessionRow, session_id, populate_existing=True)

    def lock_session(self, session: Session, session_id: str) -> SearchSessionRow | None:
        """The session row `FOR UPDATE`: an irrelevant mark and a click push on one session
        serialize, so neither can slip past the other's check."""
        return session.get(
            SearchSessionRow, session_id, populate_existing=True, with_for_update=True
        )

    def has_clicks(self, session: Session, session_id: str) -> bool:
        return (
            session.scalar(
                select(ClickEventRow.id)
                .where(ClickEventRow.session_id == session_id, ClickEventRow.event_type == CLICK)
                .limit(1)
            )
            is not None
        )

    def set_irrelevant(self, session: Session, session_id: str) -> None:
        session.execute(
            update(SearchSessionRow)
            .where(SearchSessionRow.session_id == session_id)
            .values(irrelevant=True)
            .execution_options(synchronize_session=False)
        )

    def get_session(self, session: Session, session_id: str) -> SessionRecord | None:
        row = self.session_row(session, session_id)
        if row is None:
            return None
        results = session.execute(
            select(SessionResultRow.object_id, SessionResultRow.rank, SessionResultRow.meta)
            .where(SessionResultRow.session_id == session_id)
            .order_by(SessionResultRow.rank, SessionResultRow.position)
        ).tuples()
        events = session.execute(
            select(
                ClickEventRow.event_id,
                ClickEventRow.object_id,
                ClickEventRow.event_type,
                ClickEventRow.created_at,
            )
            .where(ClickEventRow.session_id == session_id)
            .order_by(ClickEventRow.created_at, ClickEventRow.id)
        ).tuples()
        return SessionRecord(
            session_id=row.session_id,
            batch_id=row.batch_id,
            query=row.query,
            user_id=row.user_id,
            search_meta=row.search_meta,
            irrelevant=row.irrelevant,
            created_at=row.created_at,
            results=tuple(SearchResult(o, r, m) for o, r, m in results),
            events=tuple(SessionEvent(e, o, t, c) for e, o, t, c in events),
        )

    # -- events ---------------------------------------------------------------------------------
    def shown_objects(
        self, session: Session, session_id: str, object_ids: Iterable[str]
    ) -> set[str]:
        """Which of `object_ids` are among the session's results."""
        wanted = sorted(set(object_ids))
        shown: set[str] = set()
        for start in range(0, len(wanted), ID_CHUNK):
            shown.update(
                session.scalars(
                    select(SessionResultRow.object_id).where(
                        SessionResultRow.session_id == session_id,
                        SessionResultRow.object_id.in_(wanted[start : start + ID_CHUNK]),
                    )
                )
            )
        return shown

    def known_events(
        self, session: Session, event_ids: Iterable[str]
    ) -> dict[str, tuple[str, str, str]]:
        """Stored events among `event_ids`: event id -> (session id, object id, type)."""
        wanted = sorted(set(event_ids))
        known: dict[str, tuple[str, str, str]] = {}
        for start in range(0, len(wanted), ID_CHUNK):
            for event_id, session_id, object_id, event_type in session.execute(
                select(
                    ClickEventRow.event_id,
                    ClickEventRow.session_id,
                    ClickEventRow.object_id,
                    ClickEventRow.event_type,
                ).where(ClickEventRow.event_id.in_(wanted[start : start + ID_CHUNK]))
            ):
                known[event_id] = (session_id, object_id, event_type)
        return known

    def insert_events(self, session: Session, rows: Sequence[dict[str, Any]]) -> int:
        """Insert, skipping event ids already stored (a concurrent identical push); returns
        how many rows this call added."""
        added = 0
        for start in range(0, len(rows), ROW_CHUNK):
            stmt = (
                _insert(session)(ClickEventRow)
                .values(list(rows[start : start + ROW_CHUNK]))
                .on_conflict_do_nothing()
            )
            added += len(session.execute(stmt.returning(ClickEventRow.id)).all())
        return added

    # -- training view --------------------------------------------------------------------------
    def training_sessions(self, session: Session, batch_id: str) -> list[SearchSession]:
        """The batch's sessions with ranked results and deduplicated clicks, by session id.

        Three set-wise queries for the whole batch, not three per session.
        """
        in_batch = SearchSessionRow.batch_id == batch_id
        heads = session.execute(
            select(SearchSessionRow.session_id, SearchSessionRow.query, SearchSessionRow.irrelevant)
            .where(in_batch)
            .order_by(SearchSessionRow.session_id)
        ).tuples().all()
        results: dict[str, list[str]] = {}
        for session_id, object_id in session.execute(
            select(SessionResultRow.session_id, SessionResultRow.object_id)
            .join(SearchSessionRow, SearchSessionRow.session_id == SessionResultRow.session_id)
            .where(in_batch)
            .order_by(
                SessionResultRow.session_id, SessionResultRow.rank, SessionResultRow.position
            )
        ).tuples():
            results.setdefault(session_id, []).append(object_id)
        clicks: dict[str, dict[str, None]] = {}  # an ordered set per session
        for session_id, object_id in session.execute(
            select(ClickEventRow.session_id, ClickEventRow.object_id)
            .join(SearchSessionRow, SearchSessionRow.session_id == ClickEventRow.session_id)
            .where(in_batch, ClickEventRow.event_type == CLICK)
            .order_by(ClickEventRow.session_id, ClickEventRow.created_at, ClickEventRow.id)
        ).tuples():
            clicks.setdefault(session_id, {})[object_id] = None
        return [
            SearchSession(
                session_id=session_id,
                query=query,
                results=tuple(results.get(session_id, ())),
                clicks=tuple(clicks.get(session_id, {})),
                irrelevant=bool(irrelevant),
            )
            for session_id, query, irrelevant in heads
        ]
