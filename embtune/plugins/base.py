"""The plugin interface every fine-tuning method implements.

A plugin validates its params (a Pydantic model, so the API can publish its JSON schema and name
each bad field) and runs with a `RunContext` that is its only window on the outside world: the
source model, the training data, progress reporting and cancellation. Plugins import no HTTP or
SQL code; the lifecycle (claiming, heartbeats, terminal states, registering the result) is the
runner's job, not theirs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from embtune.schemas.task_policy import invalid_params
from embtune.training.hooks import TrainingHooks

if TYPE_CHECKING:
    from embtune.clickstream.sessions import SearchSession
    from embtune.domain.evaluation_sets import JudgedSet
    from embtune.domain.throughput import MeasuredRates


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainingData(Protocol):
    """Read access to what a task trains on: the batch's sessions and the item catalogue."""

    @property
    def batch_id(self) -> str | None: ...

    def sessions(self) -> list[SearchSession]: ...

    def item_texts(self, object_ids: Iterable[str] | None = None) -> dict[str, str]:
        """Texts of the given items (all items when None); unknown ids are left out."""
        ...


@dataclass(frozen=True)
class SourceModel:
    id: str
    name: str
    source: str  # `builtin:<alias>` or a local directory


@dataclass(frozen=True)
class Estimating:
    """What an estimate of a run's duration can be made from, besides the data: what a worker
    host measured before for this model's size and precision setting (None: nothing yet), the
    source model's local directory and the embedding cache (None where not on this host)."""

    rates: MeasuredRates | None = None
    source_dir: Path | None = None
    cache_dir: Path | None = None


@dataclass
class RunContext:
    """What a plugin gets for one run. Callbacks are bound by the runner."""

    task_id: str
    model: SourceModel
    params: BaseModel
    output_dir: Path
    data: TrainingData | None
    report: Callable[..., None]
    should_stop: Callable[[], bool]
    # Where a method may keep reusable, derived data between runs (e.g. catalogue embeddings per
    # model); None: nothing is kept. Everything in it must be safe to delete at any time.
    cache_dir: Path | None = None
    # The judged evaluation set the task is decided on (the task's, else the model's default);
    # None: the method judges on held-out clicks.
    judged: JudgedSet | None = None
    # What this worker host measured before for the source model's size and precision setting,
    # for the run's phase weights and ETA; None: nothing yet.
    rates: MeasuredRates | None = None
    # Checkpoints and extra training callbacks, passed through to the trainer untouched.
    hooks: TrainingHooks = field(default_factory=TrainingHooks)

    def progress(
        self, step: int, total_steps: int, message: str = "", **extra: Any
    ) -> None:
        """Record progress (throttled by the runner) and stop the run if it was canceled."""
        self.report(step=step, total_steps=total_steps, message=message, **extra)
        self.check_stop()

    def check_stop(self) -> None:
        from embtune.errors import TaskStopped

        if self.should_stop():
            raise TaskStopped("task was canceled or taken over")


@dataclass(frozen=True)
class RunResult:
    """A successful run: metrics to store on the task and the directory of the new model."""

    metrics: dict[str, Any]
    model_dir: Path
    model_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class FineTuningPlugin(ABC):
    """Subclass, set the class attributes, implement `run`; register via entry point
    `embtune.plugins` (`name = "pkg.module:Class"`) or `EMBTUNE_PLUGINS`."""

    name: ClassVar[str]
    description: ClassVar[str]
    trainable: ClassVar[bool] = True
    # Whether a run trains on a clickstream batch (the runner then releases / loads it).
    uses_clickstream: ClassVar[bool] = True
    params_model: ClassVar[type[BaseModel]] = NoParams

    def validate_params(self, raw: Mapping[str, Any] | None) -> BaseModel:
        """One validation function, used by the API at create time and the worker at run time."""
        try:
            return self.params_model.model_validate(dict(raw or {}))
        except ValidationError as exc:
            raise invalid_params(exc, f"invalid params for plugin {self.name!r}") from None

    def params_schema(self) -> dict[str, Any]:
        return self.params_model.model_json_schema()

    def preflight(
        self, params: BaseModel, data: TrainingData | None, estimating: Estimating | None = None
    ) -> dict[str, Any]:
        """What a run would train on, without training: figures, an estimated duration and
        whether it would be refused. Methods override it; the default knows nothing."""
        return {"would_refuse": False, "reason": None, "estimated_seconds": None}

    @abstractmethod
    def run(self, ctx: RunContext) -> RunResult:
        """Train; raise `TaskRefused` for a deterministic refusal, anything else fails the run."""
