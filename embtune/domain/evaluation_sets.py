"""Judged evaluation sets: frozen queries with graded relevant items, the ground truth a task's
verdict is decided on when a user has one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Names of evaluation sets and aliases: they appear in URLs, CLI arguments and logs.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
NAME_MAX_LENGTH = 100


@dataclass(frozen=True)
class EvaluationSet:
    """A set's header; its queries and judgements are read with `JudgedSet`."""

    id: str
    name: str
    description: str | None
    queries_count: int
    judgements_count: int
    created_at: datetime


@dataclass(frozen=True)
class JudgedSet:
    """What a run is judged on: query texts and, per query, the grade of each judged item
    (grade > 0: relevant; graded NDCG uses the grade as gain)."""

    id: str
    name: str
    queries: dict[str, str]
    grades: dict[str, dict[str, int]]

    def relevant(self) -> dict[str, set[str]]:
        """Per query, the items with a positive grade."""
        return {
            query_id: {object_id for object_id, grade in judged.items() if grade > 0}
            for query_id, judged in self.grades.items()
        }
