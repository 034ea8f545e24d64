"""Engine and transactions, identical in behaviour on SQLite and PostgreSQL.

SQLite needs help to be a fair stand-in: WAL so readers never block the writer, a busy timeout
instead of instant "database is locked", and `BEGIN IMMEDIATE` for write transactions so two
writers queue up rather than dead-lock while upgrading a read lock.

Every wait on the database is bounded (`DbTimeouts`): a database that accepts connections but
never answers must cost a request a few seconds and a 503, not a hung thread. Whatever bound
expires — connect, statement, the client's own deadline on an answer, a free pooled connection
— leaves as `Unavailable`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from embtune.errors import Unavailable

_WRITE = "embtune_write"
PING_IF_IDLE_S = 1.0
# How much longer than the server's statement timeout the client waits for an answer: a server
# that still answers cancels the statement itself (and keeps the connection); only one that
# does not answer at all meets the client's deadline, which closes the connection.
ANSWER_GRACE_S = 1.0
# SQLSTATEs that mean "not now" rather than "wrong": canceled (statement timeout), lock
# timeout, the server shutting down or starting up. Class 08 (connection exception) as well.
_OUTAGE_SQLSTATES = frozenset({"57014", "55P03", "57P01", "57P02", "57P03"})


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class DbTimeouts:
    """How long any one wait on the database may take.

    `statement_s=None` leaves statements unbounded: migrations, which may wait on another
    starter's advisory lock or rebuild an index for minutes, run on such an engine."""

    connect_s: int = 5
    statement_s: float | None = 30.0
    pool_s: float = 10.0

    @property
    def answer_s(self) -> float | None:
        """The client's own deadline on one exchange with the server."""
        return None if self.statement_s is None else self.statement_s + ANSWER_GRACE_S


UNBOUNDED = DbTimeouts(statement_s=None)


def make_engine(url: str, timeouts: DbTimeouts = UNBOUNDED) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # A statement that waits for SQLite's write lock waits at most the statement timeout.
        busy_s = timeouts.statement_s if timeouts.statement_s is not None else 30.0
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_s},
            pool_timeout=timeouts.pool_s,
        )
        _tune_sqlite(engine, busy_ms=math.ceil(busy_s * 1000))
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20, pool_timeout=timeouts.pool_s)
    if parsed.get_dialect().driver == "psycopg":
        _bound_psycopg(engine, timeouts)
    _ping_idle_connections(engine)
    return engine


def _bound_psycopg(engine: Engine, timeouts: DbTimeouts) -> None:
    """Connect timeout and server-side statement timeout as libpq parameters, plus a client-side
    deadline on every answer.

    The server-side `statement_timeout` only helps while the server answers. A stalled server,
    or a proxy that stops forwarding, never answers, and TCP keepalives or `tcp_user_timeout`
    do not notice: the peer's kernel still acknowledges every byte. psycopg waits for answers
    in `Connection.wait` (every execute, fetch, commit and rollback goes through it), so a
    connection class that gives that wait a deadline bounds every exchange
    (`embtune.storage.pg_bounded`, imported here: SQLite-only installs never load psycopg)."""
    from embtune.storage.pg_bounded import connect_bounded

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        cparams.setdefault("connect_timeout", max(2, timeouts.connect_s))  # libpq's minimum
        # psycopg prepares a statement run five times, and PostgreSQL may then keep one generic
        # plan for it, chosen while the tables were small: the bulk path's `IN (…)` lookups
        # became sequential scans as a 100,000-session import grew the tables (a chunk went from
        # 0.35 s to 4 s). Every execution planned with its own values keeps them index scans.
        options = "-c plan_cache_mode=force_custom_plan"
        if timeouts.statement_s is not None:
            ms = math.ceil(timeouts.statement_s * 1000)
            options = f"-c statement_timeout={ms} {options}"
        # a URL's own `options` come later and so win
        cparams["options"] = f"{options} {cparams.get('options', '')}".strip()
        return connect_bounded(timeouts.answer_s, *cargs, **cparams)


def _ping_idle_connections(engine: Engine) -> None:
    """`pool_pre_ping`, but only for a connection that sat idle in the pool: after a database
    restart those are the dead ones, while a connection handed back a moment ago is alive —
    pinging it would add a round trip to every transaction of a busy server. A failed ping
    makes the pool replace the connection (SQLAlchemy's `DisconnectionError` protocol)."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_IF_IDLE_S:
            return  # new, or back in the pool a moment ago
        try:
            dbapi_connection.execute("SELECT 1")
            dbapi_connection.rollback()
        except Exception as exc:
            raise DisconnectionError(f"stale pooled connection: {exc}") from exc


def _tune_sqlite(engine: Engine, *, busy_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """Hands out short transactions; callers never commit by themselves."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = sessionmaker(
            bind=engine.execution_options(**{_WRITE: True}), expire_on_commit=False
        )
        self._reader = sessionmaker(bind=engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on any exception."""
        with _translate_outage(), self._writer() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with _translate_outage(), self._reader() as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.read() as session:
            session.connection().exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _translate_outage() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        if exc.connection_invalidated or _looks_like_outage(exc):
            raise Unavailable("database unavailable: " + _first_line(exc.orig)) from exc
        raise
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise Unavailable("database unavailable: " + _first_line(exc.orig)) from exc
        raise
    except PoolTimeoutError as exc:  # every pooled connection busy (or stuck) for pool_timeout
        raise Unavailable(
            "database unavailable: no free database connection within the pool timeout"
        ) from exc


def _looks_like_outage(exc: OperationalError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    if sqlstate in _OUTAGE_SQLSTATES or sqlstate.startswith("08"):
        return True
    text = str(exc.orig).lower()
    return any(
        s in text
        for s in ("connection", "could not connect", "server closed", "terminating", "timeout",
                  "database is locked")
    )


def _first_line(exc: BaseException | None) -> str:
    return (str(exc) or type(exc).__name__).strip().splitlines()[0] if exc else "unknown error"
