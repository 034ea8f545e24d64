"""Task states and the transitions between them, written down once.

Every status change anywhere in embtune is one of `Transition`, creation included: storage turns
`create` into the insert that writes the first status, and every other one into a compare-and-set
`UPDATE … WHERE status IN (sources)`, so racing workers, cancels and restarts can only ever
produce the states this table allows. Nothing here knows what a task does (fine-tuning today):
the table is about a task's lifecycle, which every `TaskKind` shares.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class TaskKind(enum.StrEnum):
    """What a task computes; every kind shares the one lifecycle below."""

    fine_tuning = "fine_tuning"  # tune a model on a batch of sessions
    reindex = "reindex"  # write a model's catalogue vectors into a sink and switch its alias
    # one item range of a sharded reindex, written by whichever worker claims it (never listed)
    reindex_shard = "reindex_shard"
    # load sessions or items from a file (local or fsspec URL) in committed chunks
    import_ = "import"


class TaskStatus(enum.StrEnum):
    pending = "pending"
    processing = "processing"
    done = "done"
    canceled = "canceled"
    failed = "failed"
    refused = "refused"

    @classmethod
    def parse(cls, value: str) -> TaskStatus:
        """Case-insensitive lookup, so `?status=PENDING` works as the seed docs show."""
        try:
            return cls(value.strip().lower())
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown status {value!r}; valid: {valid}") from None

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({TaskStatus.done, TaskStatus.failed, TaskStatus.refused, TaskStatus.canceled})
# the states a run ends a task in (canceled is the user's doing, not the run's)
RUN_OUTCOMES = frozenset({TaskStatus.done, TaskStatus.failed, TaskStatus.refused})


@dataclass(frozen=True)
class TransitionRule:
    sources: frozenset[TaskStatus]
    target: TaskStatus
    # what the history says when the caller gives no message ("" → the transition's name)
    event_message: str = ""


@enum.unique  # two rules with equal values would silently become one member under two names
class Transition(enum.Enum):
    """Named state changes; the value is (allowed sources, target, default event message)."""

    # No sources: a task is born by this transition (an insert), never moved into it.
    create = TransitionRule(frozenset(), TaskStatus.pending, "created")
    claim = TransitionRule(frozenset({TaskStatus.pending}), TaskStatus.processing)
    complete = TransitionRule(frozenset({TaskStatus.processing}), TaskStatus.done)
    fail = TransitionRule(frozenset({TaskStatus.processing}), TaskStatus.failed)
    refuse = TransitionRule(frozenset({TaskStatus.processing}), TaskStatus.refused)
    cancel = TransitionRule(
        frozenset({TaskStatus.pending, TaskStatus.processing}), TaskStatus.canceled
    )
    # Not from `done`: a done task keeps its result (its registered model points to it); tuning
    # again is a new task on the same batch. Not from `processing`: a live run is left alone.
    restart = TransitionRule(
        frozenset(
            {TaskStatus.pending, TaskStatus.failed, TaskStatus.refused, TaskStatus.canceled}
        ),
        TaskStatus.pending,
    )
    requeue = TransitionRule(frozenset({TaskStatus.processing}), TaskStatus.pending)
    give_up = TransitionRule(frozenset({TaskStatus.processing}), TaskStatus.failed, "gave up")

    @property
    def sources(self) -> frozenset[TaskStatus]:
        return self.value.sources

    @property
    def target(self) -> TaskStatus:
        return self.value.target

    @property
    def event_message(self) -> str:
        """The message of this transition's event when the caller gives none."""
        return self.value.event_message or self.name

    def allows(self, status: TaskStatus) -> bool:
        return status in self.sources


class TaskEventKind(enum.StrEnum):
    """What a line of a task's history records; the value is what is stored and served."""

    transition = "transition"  # a status change (one of `Transition`)
    progress = "progress"  # a phase message reported by the running method
    run = "run"  # a note about the run that changes no status (batch released, run stopped)
    verdict = "verdict"  # the before/after verdict a finished run reached, with its interval
    promotion = "promotion"  # whether the tuned model was promoted to an alias, and why
    switch = "switch"  # a reindex switched its sink's alias to the collection it wrote
    # something beside the run went wrong and changed nothing (e.g. the experiment tracker was
    # unreachable)
    warning = "warning"


@dataclass(frozen=True)
class Progress:
    """Where a run is; `extra` carries method-specific figures (epoch, loss, eta_s)."""

    fraction: float = 0.0
    step: int = 0
    total_steps: int = 0
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "step": self.step,
            "total_steps": self.total_steps,
            "message": self.message,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Progress:
        if not raw:
            return cls()
        known = {"fraction", "step", "total_steps", "message"}
        return cls(
            fraction=float(raw.get("fraction", 0.0)),
            step=int(raw.get("step", 0)),
            total_steps=int(raw.get("total_steps", 0)),
            message=str(raw.get("message", "")),
            extra={k: v for k, v in raw.items() if k not in known},
        )


@dataclass(frozen=True)
class Task:
    id: str
    status: TaskStatus
    embedding_model_id: str | None  # None: a task of no model (an import)
    idempotency_key: str | None
    batch_id: str | None
    params: dict[str, Any]
    metadata: dict[str, Any]
    message_id: str | None
    progress: Progress
    metrics: dict[str, Any] | None
    result_model_id: str | None
    detail: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    dispatched_at: datetime | None
    worker_id: str | None
    kind: TaskKind = TaskKind.fine_tuning


@dataclass(frozen=True)
class TaskEvent:
    id: int
    task_id: str
    kind: TaskEventKind
    from_status: TaskStatus | None
    to_status: TaskStatus | None
    message: str
    created_at: datetime
