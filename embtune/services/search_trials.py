"""Reading a task's search trials (the API's trials table)."""

from __future__ import annotations

from embtune.domain.search_trials import SearchTrial
from embtune.domain.tasks import TaskKind
from embtune.errors import NotFound
from embtune.storage.db import Database
from embtune.storage.search_trials_repo import SearchTrialRepository
from embtune.storage.tasks_repo import TaskRepository


class SearchTrialService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.tasks = TaskRepository()
        self.trials = SearchTrialRepository()

    def list(self, task_id: str) -> list[SearchTrial]:
        """The task's trials by number; empty for a task without a search. NotFound for an
        unknown task."""
        with self.db.read() as session:
            task = self.tasks.get(session, task_id)
            if task is None or task.kind is not TaskKind.fine_tuning:
                raise NotFound(f"task {task_id} not found")
            return self.trials.list(session, task_id)
