"""The one place that picks a dialect's `INSERT … ON CONFLICT` construct.

SQLAlchemy's generic `insert()` has no `ON CONFLICT`; PostgreSQL and SQLite each ship their own
`insert()` that does, with the same methods (`on_conflict_do_nothing`, `on_conflict_do_update`,
`excluded`). Every upsert and insert-unless-present in embtune starts here, so a third database
is one more entry below, not a hunt through the repositories.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def insert_on_conflict(dialect_name: str, table: Any) -> Any:
    """The dialect's `insert(table)`, which accepts `.on_conflict_do_*` (table: a Core table or
    a mapped class)."""
    try:
        make = _INSERTS[dialect_name]
    except KeyError:
        raise ValueError(f"no INSERT … ON CONFLICT for database {dialect_name!r}") from None
    return make(table)


def dialect_name(session: Session) -> str:
    """The name `insert_on_conflict` takes, for the database this session is bound to."""
    return session.get_bind().dialect.name
