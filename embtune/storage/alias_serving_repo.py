"""What an alias's status is read from besides the alias itself: its newest reindex task.

A reindex task serves an alias when its params name it (`params.alias`): the tasks an alias
change creates do, and so does a reindex created for the alias through the API. The newest one
says whether the alias's sink is being brought up to date, or why it is not.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from embtune.domain.tasks import TaskKind, TaskStatus
from embtune.storage.tables import TaskRow


@dataclass(frozen=True)
class AliasReindex:
    task_id: str
    model_id: str
    status: TaskStatus
    detail: str | None


def newest_reindex(session: Session, alias: str) -> AliasReindex | None:
    """The newest reindex task created for `alias`, or None.

    Scans reindex tasks newest first (the kind/created index) and matches the JSON param: an
    alias has few reindex tasks next to the fine-tuning ones, and a read of the alias is rare
    enough that no index on the JSON path is worth its cost on every task insert."""
    row = session.execute(
        select(TaskRow.id, TaskRow.embedding_model_id, TaskRow.status, TaskRow.detail)
        .where(
            TaskRow.kind == TaskKind.reindex.value,
            TaskRow.params["alias"].as_string() == alias,
        )
        .order_by(TaskRow.created_at.desc(), TaskRow.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return AliasReindex(
        task_id=row.id, model_id=row.embedding_model_id, status=TaskStatus(row.status),
        detail=row.detail,
    )
