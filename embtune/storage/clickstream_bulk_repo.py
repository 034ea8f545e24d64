"""Set-based reads and writes for bulk clickstream ingestion: a statement per table per
request (or per `ID_CHUNK` ids for lookups), never one per row.

Inserts go through `storage.upsert.insert_rows`, the database's fastest set-based insert
(`INSERT … SELECT * FROM unnest(arrays) ON CONFLICT DO NOTHING RETURNING` on PostgreSQL,
multi-row VALUES pages on SQLite).

Locks follow `embtune.storage.clickstream_repo`'s protocol, in the single-session order:
stored sessions `FOR UPDATE`, then their batches `FOR SHARE`, then the open batch `FOR SHARE`
(joined once per request) for the new sessions. Rows are locked and inserted in key order:
two bulk requests sharing new session ids or event ids then wait for each other
instead of dead-locking, each holding a key the other wants next.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from embtune.domain.clickstream import BatchStatus
from embtune.storage.clickstream_repo import CLICK
from embtune.storage.items_repo import ID_CHUNK
from embtune.storage.tables import BatchRow, ClickEventRow, SearchSessionRow, SessionResultRow
from embtune.storage.upsert import insert_rows

SESSIONS = SearchSessionRow.__table__
RESULTS = SessionResultRow.__table__
EVENTS = ClickEventRow.__table__


@dataclass(frozen=True)
class StoredSession:
    """What a bulk row is compared with when its session id is already stored."""

    batch_id: str
    request_hash: str
    irrelevant: bool


def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    ordered = sorted(set(values))
    for start in range(0, len(ordered), ID_CHUNK):
        yield ordered[start : start + ID_CHUNK]


class ClickstreamBulkRepository:
    """Stateless; every method works inside the caller's transaction."""

    def lock_sessions(
        self, session: Session, session_ids: Iterable[str]
    ) -> dict[str, StoredSession]:
        """The stored sessions among `session_ids`, each row held `FOR UPDATE` (a click and an
        irrelevant mark on one session serialize, as in the single-session path)."""
        found: dict[str, StoredSession] = {}
        for chunk in _chunks(session_ids):
            for session_id, batch_id, request_hash, irrelevant in session.execute(
                select(
                    SearchSessionRow.session_id,
                    SearchSessionRow.batch_id,
                    SearchSessionRow.request_hash,
                    SearchSessionRow.irrelevant,
                )
                .where(SearchSessionRow.session_id.in_(chunk))
                .order_by(SearchSessionRow.session_id)
                .with_for_update()
            ).tuples():
                found[session_id] = StoredSession(batch_id, request_hash, bool(irrelevant))
        return found

    def lock_batches(self, session: Session, batch_ids: Iterable[str]) -> dict[str, BatchStatus]:
        """Statuses of these batches, held `FOR SHARE`: a release waits for this request, so
        an event is flagged late exactly when its batch was released before it arrived."""
        statuses: dict[str, BatchStatus] = {}
        for chunk in _chunks(batch_ids):
            for batch_id, status in session.execute(
                select(BatchRow.id, BatchRow.status)
                .where(BatchRow.id.in_(chunk))
                .order_by(BatchRow.id)
                .with_for_update(read=True)
            ).tuples():
                statuses[batch_id] = BatchStatus(status)
        return statuses

    def clicked_sessions(self, session: Session, session_ids: Iterable[str]) -> set[str]:
        """Which of these sessions have a click event."""
        clicked: set[str] = set()
        for chunk in _chunks(session_ids):
            clicked.update(
                session.scalars(
                    select(ClickEventRow.session_id)
                    .where(ClickEventRow.session_id.in_(chunk), ClickEventRow.event_type == CLICK)
                    .distinct()
                )
            )
        return clicked

    def insert_sessions(self, session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Insert the sessions whose id is not stored yet; the ids this call inserted (a
        concurrent request may have stored some of them first)."""
        ordered = sorted(rows, key=lambda row: row["session_id"])  # in key order (module doc)
        return set(insert_rows(session, SESSIONS, ordered, skip_conflicts=True,
                               returning=SESSIONS.c.session_id))

    def insert_results(self, session: Session, rows: Sequence[dict[str, Any]]) -> None:
        """Results of sessions this transaction inserted: no conflict is possible."""
        insert_rows(session, RESULTS, rows)

    def set_irrelevant(self, session: Session, session_ids: Iterable[str]) -> None:
        for chunk in _chunks(session_ids):
            session.execute(
                update(SearchSessionRow)
                .where(SearchSessionRow.session_id.in_(chunk))
                .values(irrelevant=True)
                .execution_options(synchronize_session=False)
            )

    def insert_events(self, session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Insert events, skipping ids already stored (a concurrent identical push); the ids
        this call added."""
        ordered = sorted(rows, key=lambda row: row["event_id"])  # in key order (module doc)
        return set(insert_rows(session, EVENTS, ordered, skip_conflicts=True,
                               returning=EVENTS.c.event_id))
