"""dramatiq-abort's event backend on our own database.

dramatiq-abort ships a Redis backend only; with RabbitMQ (or the embedded broker) the database
every worker already shares carries abort signals instead, so no extra service is needed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import timedelta

from dramatiq_abort.backend import Event, EventBackend
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from embtune.storage.db import Database, utcnow
from embtune.storage.tables import AbortSignalRow

POLL_INTERVAL_S = 0.25


class DatabaseEventBackend(EventBackend):
    def __init__(self, db: Database) -> None:
        self.db = db

    def notify(self, events: Iterable[Event], ttl: int) -> None:
        expires = utcnow() + timedelta(milliseconds=ttl)
        ins = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
        with self.db.transaction() as session:
            session.execute(delete(AbortSignalRow).where(AbortSignalRow.expires_at < utcnow()))
            for event in events:
                stmt = ins(AbortSignalRow).values(
                    key=event.key, params=dict(event.params), expires_at=expires
                )
                session.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["key"],
                        set_={"params": stmt.excluded.params, "expires_at": expires},
                    )
                )

    def _take(self, keys: list[str]) -> Event | None:
        """Consume one signalled key (dramatiq-abort treats signals as one-shot)."""
        with self.db.transaction() as session:
            row = session.scalars(
                select(AbortSignalRow)
                .where(AbortSignalRow.key.in_(keys), AbortSignalRow.expires_at >= utcnow())
                .limit(1)
            ).first()
            if row is None:
                return None
            event = Event(row.key, dict(row.params or {}))
            session.delete(row)
            return event

    def poll(self, key: str) -> Event | None:
        return self._take([key])

    def wait_many(self, keys: Iterable[str], timeout: int) -> Event | None:
        keys = list(keys)
        deadline = time.monotonic() + timeout / 1000
        while True:
            event = self._take(keys)
            if event is not None or time.monotonic() >= deadline:
                return event
            time.sleep(POLL_INTERVAL_S)
