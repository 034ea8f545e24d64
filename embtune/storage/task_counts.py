"""Per-(kind, model, status) task tallies: what makes `X-Total-Count` O(1) at a million tasks.

A status change records a delta in the session; the deltas are written by one upsert per key
just before the transaction commits, in key order. Writing them last keeps the counter rows
locked only for the commit itself (creates on one model all touch the same row), and a single
global order means two transactions can never wait for each other's counter rows (no deadlock),
whatever else they did before. Because the upsert shares the transaction that changed the task,
the tallies and the task rows are never out of step, on SQLite or PostgreSQL. (A create on
PostgreSQL bumps its tally inside its single insert statement instead: see `tasks_repo`.)
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import Select, event, func, select, text
from sqlalchemy.orm import Session

from embtune.storage.tables import TaskCountRow
from embtune.storage.upsert import dialect_name, insert_on_conflict

_PENDING = "embtune.task_count_deltas"


# The tally key of a task that belongs to no model (an import): keys cannot be NULL.
NO_MODEL = ""


def record(
    session: Session, kind: str, embedding_model_id: str | None, old: str | None,
    new: str | None,
) -> None:
    """Note that one `kind` task of `embedding_model_id` moved from `old` to `new` (None: no
    status)."""
    if old == new:
        return
    embedding_model_id = embedding_model_id or NO_MODEL
    deltas: Counter[tuple[str, str, str]] = session.info.setdefault(_PENDING, Counter())
    if old is not None:
        deltas[(kind, embedding_model_id, old)] -= 1
    if new is not None:
        deltas[(kind, embedding_model_id, new)] += 1


def upsert(dialect: str, rows: Select[Any] | None = None) -> Any:
    """INSERT … ON CONFLICT adding `n` to a tally: of bound values, or of the (kind, model,
    status, n) rows of `rows` (the PostgreSQL create folds its tally into its insert this way)."""
    table = TaskCountRow.__table__
    stmt = insert_on_conflict(dialect, table)
    if rows is not None:
        stmt = stmt.from_select(["kind", "embedding_model_id", "status", "n"], rows)
    return stmt.on_conflict_do_update(
        index_elements=["kind", "embedding_model_id", "status"],
        set_={"n": table.c.n + stmt.excluded.n},
    )


_UPSERT = {name: upsert(name) for name in ("postgresql", "sqlite")}


@event.listens_for(Session, "before_commit")
def _write_deltas(session: Session) -> None:
    deltas: Counter[tuple[str, str, str]] | None = session.info.pop(_PENDING, None)
    if not deltas:
        return
    rows = [
        {"kind": kind, "embedding_model_id": model_id, "status": status, "n": delta}
        for (kind, model_id, status), delta in sorted(deltas.items())
        if delta
    ]
    stmt = _UPSERT[dialect_name(session)]
    for row in rows:  # one statement each, in key order: the lock order is global
        session.execute(stmt, row)


@event.listens_for(Session, "after_rollback")
def _drop_deltas(session: Session) -> None:
    session.info.pop(_PENDING, None)


def total(
    session: Session,
    *,
    status: str | None = None,
    embedding_model_id: str | None = None,
    kind: str | None = None,
) -> int:
    """Tasks matching the filters: a sum over at most one small row per (kind, model, status)."""
    query = select(func.coalesce(func.sum(TaskCountRow.n), 0))
    if kind is not None:
        query = query.where(TaskCountRow.kind == kind)
    if status is not None:
        query = query.where(TaskCountRow.status == status)
    if embedding_model_id is not None:
        query = query.where(TaskCountRow.embedding_model_id == embedding_model_id)
    return int(session.scalar(query) or 0)


def by_status(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(TaskCountRow.status, func.sum(TaskCountRow.n))
        .group_by(TaskCountRow.status)
        .order_by(TaskCountRow.status)
    )
    return {status: int(n) for status, n in rows if n}


RECOUNT_SQL = (
    "INSERT INTO task_counts (kind, embedding_model_id, status, n) "
    "SELECT kind, COALESCE(embedding_model_id, ''), status, count(*) FROM tasks "
    "GROUP BY kind, COALESCE(embedding_model_id, ''), status"
)


def recount(session: Session) -> None:
    """Rebuild every tally from the tasks table (migration back-fill; after a bulk load that
    bypassed the repository). Locks the table on PostgreSQL so no change slips in between."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE tasks IN SHARE MODE"))
        session.execute(text("LOCK TABLE task_counts IN EXCLUSIVE MODE"))
    session.execute(text("DELETE FROM task_counts"))
    session.execute(text(RECOUNT_SQL))
