"""dramatiq-abort's event backend on our own database, and the outage logging of its watcher.

dramatiq-abort ships a Redis backend only; with RabbitMQ (or the embedded broker) the database
every worker already shares carries abort signals instead, so no extra service is needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import timedelta

from dramatiq_abort.backend import Event, EventBackend
from sqlalchemy import delete, select

from embtune.outage_log import OutageLog
from embtune.storage.db import Database, utcnow
from embtune.storage.tables import AbortSignalRow
from embtune.storage.upsert import insert_on_conflict

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.25


class OutageLoggedBackend(EventBackend):
    """Wraps the backend of dramatiq-abort's watcher thread so that an outage logs two lines.

    The watcher (`Abortable._watcher`) calls `wait_many` about once a second while a task
    runs, and logs every exception it gets with a traceback before trying again a second later:
    one error a second for as long as Redis (or the database carrying abort signals) is away.
    Here a failed wait is logged through `OutageLog` and answered with "no event" after the
    same pause, so the watcher never sees it. Sending and polling signals pass through
    unchanged: their callers handle failures themselves."""

    def __init__(self, inner: EventBackend, name: str) -> None:
        self.inner = inner
        self._outage = OutageLog(log, f"abort watcher ({name})")

    def notify(self, events: Iterable[Event], ttl: int) -> None:
        self.inner.notify(events, ttl)

    def poll(self, key: str) -> Event | None:
        return self.inner.poll(key)

    def wait_many(self, keys: Iterable[str], timeout: int) -> Event | None:
        try:
            event = self.inner.wait_many(keys, timeout)
        except Exception as exc:
            self._outage.failed(exc)
            time.sleep(timeout / 1000)  # the watcher's own pause after an error
            return None
        self._outage.ok()
        return event


class DatabaseEventBackend(EventBackend):
    def __init__(self, db: Database) -> None:
        self.db = db

    def notify(self, events: Iterable[Event], ttl: int) -> None:
        expires = utcnow() + timedelta(milliseconds=ttl)
        with self.db.transaction() as session:
            session.execute(delete(AbortSignalRow).where(AbortSignalRow.expires_at < utcnow()))
            for event in events:
                stmt = insert_on_conflict(self.db.dialect, AbortSignalRow).values(
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
