"""A test plugin with a known learning curve, for hyperparameter search tests.

Its quality is a function of the learning rate alone (best at 1e-4, worse by a third per
decade away), reached linearly over the first epoch; it reports that curve to a search trial at
the trial's evaluation points (hundredths of an epoch, as the real run's evaluation does), so
which trial wins and which a median pruner stops is known in advance. Registered like a user's
plugin (`plugins=[..., "tests.support.search_plugin:CurvePlugin"]`).
"""

from __future__ import annotations

import math
import time
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from embtune.plugins.base import FineTuningPlugin, RunContext, RunResult

BEST_LR = 1e-4


class CurveParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(3e-5, ge=1e-7, le=1e-2)
    epochs: int = Field(1, ge=1, le=50)
    steps_per_epoch: int = Field(4, ge=1, le=1000)
    step_seconds: float = Field(0.0, ge=0, le=10)


def quality(learning_rate: float) -> float:
    return max(0.0, 1.0 - abs(math.log10(learning_rate) - math.log10(BEST_LR)) / 3)


class CurvePlugin(FineTuningPlugin):
    name: ClassVar[str] = "curve"
    description: ClassVar[str] = "Test plugin: a known learning curve per learning rate."
    uses_clickstream: ClassVar[bool] = False
    params_model: ClassVar[type[BaseModel]] = CurveParams

    def run(self, ctx: RunContext) -> RunResult:
        params = ctx.params
        assert isinstance(params, CurveParams)
        target = quality(params.learning_rate)
        trial = ctx.hooks.trial
        total = params.epochs * params.steps_per_epoch
        per_epoch = trial.evaluations_per_epoch if trial is not None else 1
        reported = 0
        for step in range(1, total + 1):
            time.sleep(params.step_seconds)
            ctx.progress(step, total, "training")
            epoch = step / params.steps_per_epoch
            point = math.floor(epoch * per_epoch + 1e-9)
            if trial is not None and point > reported:
                reported = point
                trial.report(round(point * 100 / per_epoch), target * min(1.0, epoch))
        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        (ctx.output_dir / "weights.txt").write_text(f"lr {params.learning_rate}\n")
        metrics = {"judged": {"after": {"ndcg@10": target}}, "params": params.model_dump()}
        return RunResult(metrics=metrics, model_dir=ctx.output_dir)
