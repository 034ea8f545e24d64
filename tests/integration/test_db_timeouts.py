"""Every bounded wait on the database ends in `Unavailable` (503), not a hang or a 500: the
server's statement timeout, SQLite's lock wait, an exhausted pool. (A stalled server and the
client-side deadline: tests/integration/test_outages.py.)"""

from __future__ import annotations

import sqlite3
import time
from contextlib import ExitStack

import pytest
from sqlalchemy import text

from embtune.errors import Unavailable
from embtune.storage import migrate
from embtune.storage.db import Database, DbTimeouts, make_engine
from tests.support.backends import Backend


@pytest.mark.backends("postgres-redis")
def test_statement_timeout_is_unavailable_and_keeps_the_connection(backend: Backend) -> None:
    db = Database(make_engine(backend.database_url, DbTimeouts(statement_s=0.3)))
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="statement timeout"), db.read() as session:
            session.execute(text("SELECT pg_sleep(5)"))
        assert time.monotonic() - started < 1.0  # the server canceled it, not the client
        with db.read() as session:  # the pooled connection survived the cancel
            assert session.execute(text("SELECT 1")).scalar() == 1
        assert db.engine.pool.checkedin() == 1
    finally:
        db.dispose()


@pytest.mark.backends("sqlite-embedded")
def test_sqlite_lock_wait_follows_the_statement_timeout(backend: Backend) -> None:
    db = Database(make_engine(backend.database_url, DbTimeouts(statement_s=0.3)))
    migrate.upgrade(db.engine)
    holder = sqlite3.connect(backend.database_url.removeprefix("sqlite:///"))
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        started = time.monotonic()
        with pytest.raises(Unavailable, match="locked"), db.transaction() as session:
            session.execute(text("SELECT 1"))
        assert 0.25 < time.monotonic() - started < 3.0
    finally:
        holder.rollback()
        holder.close()
        db.dispose()


@pytest.mark.backends("sqlite-embedded", "postgres-redis")
def test_exhausted_pool_is_unavailable_after_the_pool_timeout(backend: Backend) -> None:
    db = Database(make_engine(backend.database_url, DbTimeouts(pool_s=0.2)))
    pool = db.engine.pool
    capacity = pool.size() + pool._max_overflow  # type: ignore[attr-defined]
    try:
        with ExitStack() as held:
            for _ in range(capacity):
                held.enter_context(db.engine.connect())
            started = time.monotonic()
            with pytest.raises(Unavailable, match="no free database connection"), db.read() as s:
                s.execute(text("SELECT 1"))
            assert time.monotonic() - started < 2.0
    finally:
        db.dispose()
