"""A psycopg connection with a client-side deadline on every answer from the server.

Why: PostgreSQL's `statement_timeout` is enforced by the server, so it cannot end a wait on a
server (or a proxy in front of it) that has stopped answering while keeping the TCP connection
open; keepalives and `tcp_user_timeout` do not notice either, since the peer's kernel still
acknowledges every byte. Without a deadline such a wait lasts as long as the stall.
"""

from __future__ import annotations

import inspect
from typing import Any

import psycopg
from psycopg import errors

# `Connection.wait(..., timeout=)` and the error it raises on expiry; older psycopg releases
# have neither, and then only the server-side statement timeout applies.
_WaitTimeout: type[BaseException] | None = getattr(errors, "_WaitTimeout", None)
_WAIT_TAKES_TIMEOUT = (
    _WaitTimeout is not None and "timeout" in inspect.signature(psycopg.Connection.wait).parameters
)


class BoundedConnection(psycopg.Connection[Any]):
    """Every wait for the server (execute, fetch, commit, rollback: all go through `wait`) ends
    after `answer_timeout_s`; the connection is then closed, because its protocol state is
    unknown, and the error says what happened. SQLAlchemy sees a closed connection, counts the
    error as a disconnect and drops it from the pool."""

    answer_timeout_s: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if timeout is not None:  # psycopg's own bounded waits (notifies, cancel) keep theirs
            return super().wait(gen, interval, timeout)
        limit = self.answer_timeout_s
        if limit is None or not _WAIT_TAKES_TIMEOUT:
            return super().wait(gen, interval)
        try:
            return super().wait(gen, interval, limit)
        except _WaitTimeout:  # type: ignore[misc]
            self.close()
            raise psycopg.OperationalError(
                f"no answer from the database server within {limit:g} s; connection closed"
            ) from None


def connect_bounded(answer_timeout_s: float | None, *args: Any, **kwargs: Any) -> BoundedConnection:
    """`psycopg.connect` (what SQLAlchemy calls) returning a `BoundedConnection`."""
    connection = BoundedConnection.connect(*args, **kwargs)
    connection.answer_timeout_s = answer_timeout_s
    return connection
