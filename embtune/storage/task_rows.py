"""Task rows <-> domain values, and the hot statements on the task tables, built once.

Split from `tasks_repo` so the repository reads as its verbs. The create statements write what
`Transition.create` says (its target status and its event message), never a status of their own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, func, insert, literal, null, select, update

from embtune.domain.tasks import (
    Progress,
    Task,
    TaskEvent,
    TaskEventKind,
    TaskKind,
    TaskStatus,
    Transition,
)
from embtune.storage import task_counts
from embtune.storage.tables import TaskEventRow, TaskRow
from embtune.storage.upsert import insert_on_conflict

# The hot statements work on the Core tables with bound parameters: compiled once and cached,
# without the ORM's per-call attribute coercion (a large share of a create's cost; see the
# README's latency figures).
TASKS = TaskRow.__table__
INSERT_EVENT = insert(TaskEventRow.__table__)
# every column bound explicitly (a column the caller leaves out is NULL), so the statement is
# one compiled form whatever the caller passes — also inside the CTE below
INSERT_TASK = {
    name: insert_on_conflict(name, TASKS)
    .values({c.name: bindparam(c.name, type_=c.type) for c in TASKS.c})
    .on_conflict_do_nothing(index_elements=["idempotency_key"])
    .returning(*TASKS.c)
    for name in ("postgresql", "sqlite")
}


MARK_DISPATCHED = (
    update(TASKS)
    .where(TASKS.c.id == bindparam("b_task"), TASKS.c.message_id == bindparam("b_message"))
    .values(dispatched_at=bindparam("at"))
)


def _insert_task_with_event() -> Any:
    """PostgreSQL: the task, its `Transition.create` event and its tally in one statement
    (data-modifying CTEs), one round trip instead of three; the event and the tally are
    written only when the task was."""
    task = INSERT_TASK["postgresql"].cte("new_task")
    event = (
        insert(TaskEventRow.__table__)
        .from_select(
            ["task_id", "kind", "from_status", "to_status", "message", "created_at"],
            select(
                task.c.id,
                literal(TaskEventKind.transition.value),
                null(),  # `create` has no source status
                literal(Transition.create.target.value),
                literal(Transition.create.event_message),
                task.c.created_at,
            ),
        )
        .cte("created_event")
    )
    # the tally row is locked here, mid-transaction, yet no dead-lock can form: the statement
    # is the create's last before COMMIT, so it never waits for anything while holding it
    tally = task_counts.upsert(
        "postgresql", select(task.c.kind, func.coalesce(task.c.embedding_model_id,
                                                      literal(task_counts.NO_MODEL)),
                             task.c.status, literal(1))
    ).cte("created_tally")
    return select(task).add_cte(event).add_cte(tally)


INSERT_TASK_WITH_EVENT = _insert_task_with_event()


def to_task(row: Any) -> Task:
    """From an ORM `TaskRow` or a Core row of the tasks table (same attribute names)."""
    return Task(
        id=row.id,
        status=TaskStatus(row.status),
        embedding_model_id=row.embedding_model_id,
        idempotency_key=row.idempotency_key,
        batch_id=row.batch_id,
        params=row.params or {},
        metadata=row.meta or {},
        message_id=row.message_id,
        progress=Progress.from_dict(row.progress),
        metrics=row.metrics,
        result_model_id=row.result_model_id,
        detail=row.detail,
        attempts=row.attempts,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        heartbeat_at=row.heartbeat_at,
        dispatched_at=row.dispatched_at,
        worker_id=row.worker_id,
        kind=TaskKind(row.kind),
    )


def to_event(row: TaskEventRow) -> TaskEvent:
    return TaskEvent(
        id=row.id,
        task_id=row.task_id,
        kind=TaskEventKind(row.kind),
        from_status=TaskStatus(row.from_status) if row.from_status else None,
        to_status=TaskStatus(row.to_status) if row.to_status else None,
        message=row.message,
        created_at=row.created_at,
    )
