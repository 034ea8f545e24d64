"""A task's hyperparameter search: `params.search = {trials, metric, space, pruner, ...}`.

Validated in two steps, both before anything is stored: the spec's own shape here (a closed
set of tunable params and metrics, ranges that make sense), then each range's bounds against
the method's own params model (`check_space`), so a space can never sample a value the method
would reject. Every error names `params.search...` (422).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from embtune.errors import InvalidParams

# What a trial's value can be, each higher-is-better. The retrieval metrics are the judged
# set's when the task has one, else held-out clicks over the whole catalogue; click_dcg@10 is
# the debiased click metric on the shown lists (the click verdict's metric).
SearchMetric = Literal["ndcg@10", "mrr@10", "recall@10", "recall@100", "click_dcg@10"]
PrunerName = Literal["median", "successive_halving", "none"]
Choice = float | int


class FloatRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["float"]
    low: float
    high: float
    log: bool = Field(False, description="Sample on a log scale (needs low > 0).")

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class IntRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["int"]
    low: int
    high: int
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class Categorical(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["categorical"]
    choices: list[Choice] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _distinct(self) -> Categorical:
        if len(set(self.choices)) != len(self.choices):
            raise ValueError("choices must be distinct")
        return self


FloatParam = Annotated[FloatRange | Categorical, Field(discriminator="type")]
IntParam = Annotated[IntRange | Categorical, Field(discriminator="type")]
ParamRange = FloatRange | IntRange | Categorical


class SearchSpace(BaseModel):
    """The tunable params: each one named is sampled per trial, the rest keep the task's value.
    Params that change what is evaluated (validation_fraction, seed, max_seq_length) are not
    tunable: trials would not be comparable."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: FloatParam | None = None
    warmup_ratio: FloatParam | None = None
    epochs: IntParam | None = None
    batch_size: IntParam | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> SearchSpace:
        if not self.ranges():
            raise ValueError("the search space names no param")
        return self

    def ranges(self) -> dict[str, ParamRange]:
        return {name: value for name, value in self if value is not None}


class SearchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trials: int = Field(ge=1, le=100, description="Trials that run to an end (done or pruned).")
    metric: SearchMetric = Field(
        "ndcg@10",
        description="A trial's value, maximized: the judged set's figure when the task has one, "
        "else the held-out clicks' (click_dcg@10: debiased clicks on the shown lists).",
    )
    space: SearchSpace
    pruner: PrunerName = Field(
        "median",
        description="Stops a trial whose mid-training validation value falls behind: `median` "
        "(below the median of earlier trials at the same point), `successive_halving`, `none`.",
    )
    startup_trials: int = Field(
        1, ge=0, le=100, description="Trials the median pruner never prunes (it needs a baseline)."
    )
    evaluations_per_epoch: int = Field(
        2, ge=1, le=20,
        description="Mid-training evaluations per epoch, reported to the pruner; steps are in "
        "hundredths of an epoch, so trials of any batch size compare at the same point.",
    )
    eval_queries: int = Field(
        64, ge=1, le=1000,
        description="Validation queries each mid-training evaluation ranks (over their source "
        "model's top candidates and relevant items, not the whole catalogue: cheap).",
    )


def check_space(
    spec: SearchSpec | None, params_model: type[BaseModel], method_params: Mapping[str, Any]
) -> None:
    """Each range's bounds (or choices) must be values the method's params model accepts with
    the task's other params: InvalidParams naming `params.search.space.<name>.<bound>`."""
    if spec is None:
        return
    errors: list[dict[str, Any]] = []
    for name, spread in spec.space.ranges().items():
        if name not in params_model.model_fields:
            errors.append(_error([name], "not a param of this method", "extra_forbidden"))
            continue
        bounds: dict[str, Any] = (
            {f"choices.{n}": c for n, c in enumerate(spread.choices)}
            if isinstance(spread, Categorical)
            else {"low": spread.low, "high": spread.high}
        )
        for where, value in bounds.items():
            try:
                params_model.model_validate({**method_params, name: value})
            except ValidationError as exc:
                for err in exc.errors(include_url=False, include_input=False):
                    if tuple(err["loc"]) == (name,) or not err["loc"]:
                        errors.append(_error([name, *where.split(".")], err["msg"], err["type"]))
    if errors:
        fields = ", ".join(".".join(e["loc"][1:]) for e in errors)
        raise InvalidParams(f"invalid search space: {fields}", errors)


def _error(loc: list[str], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", "params", "search", "space", *loc], "msg": msg, "type": kind}


class SearchTrialPublic(BaseModel):
    """One trial of a task's search (read from the domain `SearchTrial` by attribute)."""

    model_config = ConfigDict(from_attributes=True)

    number: int
    state: Literal["running", "complete", "pruned", "failed", "interrupted"]
    params: dict[str, Any]
    value: float | None = Field(
        description="The search metric: at the end for a complete trial, at the step it was "
        "pruned at for a pruned one."
    )
    intermediate: list[list[float]] = Field(
        description="[step, value] pairs reported mid-training (steps: hundredths of an epoch)."
    )
    pruned_at: int | None = Field(None, description="The step a pruned trial stopped at.")
    metrics: dict[str, Any] | None
    detail: str | None
    started_at: datetime
    finished_at: datetime | None
