"""The one place a task is created and its status written (rows and statements: `task_rows`).

A task is born by `create` (`Transition.create`: its target status and its "created" event).
Every later change is `apply`, a compare-and-set: `UPDATE … WHERE id = :id AND status IN
(:sources)` (plus the message id when the caller acts on behalf of one message). It returns the
new row, or None when the task was not in an allowed state, and writes the transition event in
the same transaction. The lifecycle's verbs (`claim`, `hand_back`, `requeue_if_stale`,
`give_up_if_stale`) take domain values and keep the column expressions here, so services never
build SQL. None of this knows what a task computes: it is about the lifecycle columns only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from embtune.domain.tasks import (
    Progress,
    Task,
    TaskEvent,
    TaskEventKind,
    TaskKind,
    TaskStatus,
    Transition,
)
from embtune.storage import task_counts, webhooks_repo
from embtune.storage.db import utcnow
from embtune.storage.tables import TaskEventRow, TaskRow
from embtune.storage.task_rows import (
    INSERT_EVENT,
    INSERT_TASK,
    INSERT_TASK_WITH_EVENT,
    MARK_DISPATCHED,
    TASKS,
    to_event,
    to_task,
)
from embtune.storage.upsert import dialect_name


class TaskRepository:
    """Stateless; every method works inside the caller's transaction."""

    def create(self, session: Session, values: dict[str, Any]) -> Task | None:
        """Insert a task by `Transition.create` unless the idempotency key exists; the new
        task, or None when the key did.

        The status and the event come from the transition, never from `values`. `ON CONFLICT
        DO NOTHING` on the unique key makes concurrent creates with one key atomic on both
        databases: exactly one insert wins, the rest see the winner's row. (A NULL key never
        conflicts.)
        """
        # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING;
        # returning the row also saves reading it back
        unknown = values.keys() - TASKS.c.keys()
        if unknown:
            raise ValueError(f"not columns of tasks: {sorted(unknown)}")
        if "status" in values:
            raise ValueError("a new task's status is Transition.create's target, not a value")
        params = {c.name: values.get(c.name) for c in TASKS.c}
        params["status"] = Transition.create.target.value
        params["kind"] = TaskKind(values.get("kind") or TaskKind.fine_tuning).value
        if dialect_name(session) == "postgresql":
            row = session.execute(INSERT_TASK_WITH_EVENT, params).first()
        else:
            row = session.execute(INSERT_TASK["sqlite"], params).first()
            if row is not None:
                self._add_transition_event(session, row.id, None, Transition.create, "")
                task_counts.record(
                    session, row.kind, row.embedding_model_id, None, row.status
                )
        return to_task(row) if row is not None else None

    def get(self, session: Session, task_id: str, *, lock: bool = False) -> Task | None:
        """`lock` takes the row lock (PostgreSQL) so a decision and its update see one state."""
        query = select(TASKS).where(TASKS.c.id == task_id)
        row = session.execute(query.with_for_update() if lock else query).first()
        return to_task(row) if row else None

    def get_by_key(self, session: Session, key: str) -> tuple[Task, str] | None:
        row = session.scalars(select(TaskRow).where(TaskRow.idempotency_key == key)).first()
        return (to_task(row), row.request_hash) if row else None

    def page(
        self,
        session: Session,
        *,
        offset: int,
        limit: int,
        status: TaskStatus | None = None,
        embedding_model_id: str | None = None,
        kind: TaskKind = TaskKind.fine_tuning,
    ) -> tuple[list[Task], int]:
        """Newest first with the id as tie-break, so offsets are stable between pages; one kind
        of task at a time (each kind has its own list)."""
        conditions = [TaskRow.kind == kind.value]
        if status is not None:
            conditions.append(TaskRow.status == status.value)
        if embedding_model_id is not None:
            conditions.append(TaskRow.embedding_model_id == embedding_model_id)
        where = and_(True, *conditions)
        rows = session.execute(
            select(TASKS)
            .where(where)
            .order_by(TASKS.c.created_at.desc(), TASKS.c.id.desc())
            .offset(offset)
            .limit(limit)
        ).all()
        total = task_counts.total(
            session,
            status=status.value if status is not None else None,
            embedding_model_id=embedding_model_id,
            kind=kind.value,
        )
        return [to_task(r) for r in rows], total

    def apply(
        self,
        session: Session,
        task_id: str,
        transition: Transition,
        *,
        message_id: str | None = None,
        message: str = "",
        values: dict[str, Any] | None = None,
    ) -> Task | None:
        """Compare-and-set one transition; None when the task was not in a source state."""
        return self._compare_and_set(
            session, task_id, transition, message_id=message_id, message=message, values=values
        )

    def _compare_and_set(
        self,
        session: Session,
        task_id: str,
        transition: Transition,
        *,
        message_id: str | None = None,
        message: str = "",
        values: dict[str, Any] | None = None,
        extra_where: Sequence[Any] = (),
    ) -> Task | None:
        """`apply`, with further guards on the row that only this repository writes."""
        # Lock the row so the event's from-status is the one the update replaced (PostgreSQL);
        # SQLite write transactions are already serialized by BEGIN IMMEDIATE.
        found = session.execute(
            select(TaskRow.status, TaskRow.embedding_model_id, TaskRow.kind)
            .where(TaskRow.id == task_id)
            .with_for_update()
        ).first()
        if found is None:
            return None
        current, model_id, kind = found
        now = utcnow()
        where = [
            TaskRow.id == task_id,
            TaskRow.status.in_([s.value for s in transition.sources]),
            *extra_where,
        ]
        if message_id is not None:
            where.append(TaskRow.message_id == message_id)
        new_values = {"status": transition.target.value, "updated_at": now, **(values or {})}
        result = session.execute(
            update(TaskRow).where(*where).values(**new_values).execution_options(
                synchronize_session=False
            )
        )
        if result.rowcount != 1:
            return None
        task_counts.record(session, kind, model_id, current, transition.target.value)
        self._add_transition_event(session, task_id, TaskStatus(current), transition, message)
        task = self.get(session, task_id)
        assert task is not None
        webhooks_repo.announce_task(session, task)  # the outbox: commits with the transition
        return task

    def _add_transition_event(
        self,
        session: Session,
        task_id: str,
        current: TaskStatus | None,
        transition: Transition,
        message: str,
    ) -> None:
        self.add_event(
            session,
            task_id,
            TaskEventKind.transition,
            current,
            transition.target,
            message or transition.event_message,
        )

    # -- the lifecycle's verbs: domain values in, guarded transitions out ----------------------
    def claim(
        self, session: Session, task_id: str, message_id: str, worker: str, now: datetime
    ) -> Task | None:
        """pending → processing for the run of message `message_id`, counting one attempt;
        None when the task is not pending under that message (a stale, duplicated or
        replaced message claims nothing)."""
        return self.apply(
            session,
            task_id,
            Transition.claim,
            message_id=message_id,
            message=f"claimed by {worker}",
            values={
                "started_at": now,
                "heartbeat_at": now,
                "finished_at": None,
                "attempts": TaskRow.attempts + 1,
                "worker_id": worker,
                "progress": Progress(message="starting").to_dict(),
                "detail": None,
            },
        )

    def hand_back(
        self, session: Session, task_id: str, message_id: str, new_message_id: str, reason: str
    ) -> Task | None:
        """processing → pending under `new_message_id`, for a run of `message_id` that stops
        without finishing (a worker shutting down). The run's progress goes with it: until a
        worker claims the task again, it says `reason`, not where the old run was."""
        return self._requeue(session, task_id, message_id, new_message_id, reason)

    def requeue_if_stale(
        self,
        session: Session,
        task_id: str,
        message_id: str | None,
        cutoff: datetime,
        new_message_id: str,
        reason: str,
    ) -> Task | None:
        """`hand_back` for a run whose worker died: only while the task's last heartbeat is
        still older than `cutoff` (a beat that arrived meanwhile keeps the run alive), and the
        dead run's heartbeat is cleared. A None `message_id` matches any message."""
        return self._requeue(
            session,
            task_id,
            message_id,
            new_message_id,
            reason,
            extra_where=(TaskRow.heartbeat_at < cutoff,),
            extra_values={"heartbeat_at": None},
        )

    def give_up_if_stale(
        self,
        session: Session,
        task_id: str,
        message_id: str | None,
        cutoff: datetime,
        detail: str,
        now: datetime,
    ) -> Task | None:
        """processing → failed with `detail`, for a dead run that has used its attempts; the
        same stale guard as `requeue_if_stale`."""
        return self._compare_and_set(
            session,
            task_id,
            Transition.give_up,
            message_id=message_id,
            extra_where=(TaskRow.heartbeat_at < cutoff,),
            message=detail,
            values={"detail": detail, "finished_at": now},
        )

    def _requeue(
        self,
        session: Session,
        task_id: str,
        message_id: str | None,
        new_message_id: str,
        reason: str,
        *,
        extra_where: Sequence[Any] = (),
        extra_values: dict[str, Any] | None = None,
    ) -> Task | None:
        return self._compare_and_set(
            session,
            task_id,
            Transition.requeue,
            message_id=message_id,
            extra_where=extra_where,
            message=reason,
            values={
                "message_id": new_message_id,
                "dispatched_at": None,
                **(extra_values or {}),
                "worker_id": None,
                "progress": Progress(message=reason).to_dict(),
            },
        )

    @staticmethod
    def _owned_by(task_id: str, message_id: str) -> tuple[Any, ...]:
        """A run owns its task while the task is processing under the run's message id."""
        return (
            TaskRow.id == task_id,
            TaskRow.status == TaskStatus.processing.value,
            TaskRow.message_id == message_id,
        )

    def update_live(
        self, session: Session, task_id: str, message_id: str, values: dict[str, Any]
    ) -> bool:
        """Write fields of a run that still owns the task."""
        result = session.execute(
            update(TaskRow)
            .where(*self._owned_by(task_id, message_id))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def is_owned(self, session: Session, task_id: str, message_id: str) -> bool:
        """The same test as `update_live`, read-only and without loading the row."""
        found = session.scalar(select(TaskRow.id).where(*self._owned_by(task_id, message_id)))
        return found is not None

    def mark_dispatched_many(
        self, session: Session, sent: Sequence[tuple[str, str]], at: datetime
    ) -> None:
        """Record that each (task id, message id) was sent — where that is still the task's
        message (a restart in between has replaced it, and its own send will be marked)."""
        session.execute(
            MARK_DISPATCHED,
            [{"b_task": t, "b_message": b, "at": at} for t, b in sent],
        )

    def undelivered(
        self, session: Session, *, sent_before: datetime, unsent_before: datetime, limit: int
    ) -> list[Task]:
        """Pending tasks never sent (send failed), or sent long ago and still unclaimed."""
        rows = session.scalars(
            select(TaskRow)
            .where(
                TaskRow.status == TaskStatus.pending.value,
                ((TaskRow.dispatched_at.is_(None)) & (TaskRow.updated_at < unsent_before))
                | (TaskRow.dispatched_at < sent_before),
            )
            .order_by(TaskRow.created_at)
            .limit(limit)
        ).all()
        return [to_task(r) for r in rows]

    def all_pending(self, session: Session, limit: int) -> list[Task]:
        rows = session.scalars(
            select(TaskRow)
            .where(TaskRow.status == TaskStatus.pending.value)
            .order_by(TaskRow.created_at)
            .limit(limit)
        ).all()
        return [to_task(r) for r in rows]

    def stale(self, session: Session, *, heartbeat_before: datetime, limit: int) -> list[Task]:
        rows = session.scalars(
            select(TaskRow)
            .where(
                TaskRow.status == TaskStatus.processing.value,
                TaskRow.heartbeat_at < heartbeat_before,
            )
            .limit(limit)
        ).all()
        return [to_task(r) for r in rows]

    def add_event(
        self,
        session: Session,
        task_id: str,
        kind: TaskEventKind,
        from_status: TaskStatus | None,
        to_status: TaskStatus | None,
        message: str,
    ) -> None:
        """One line of the task's history; a status change writes its own through `apply`."""
        session.execute(
            INSERT_EVENT,
            {
                "task_id": task_id,
                "kind": kind.value,
                "from_status": from_status.value if from_status else None,
                "to_status": to_status.value if to_status else None,
                "message": message,
                "created_at": utcnow(),
            },
        )

    def events(self, session: Session, task_id: str, limit: int = 1000) -> list[TaskEvent]:
        rows = session.scalars(
            select(TaskEventRow)
            .where(TaskEventRow.task_id == task_id)
            .order_by(TaskEventRow.id)
            .limit(limit)
        ).all()
        return [to_event(r) for r in rows]
