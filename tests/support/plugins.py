"""A trainable plugin for the test suite: sleeps through steps, reports progress, writes a file.

It lives in tests/ (never in the production package) and is registered with
`EMBTUNE_PLUGINS=tests.support.plugins:SleepyPlugin`, the same way a user's plugin would be.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

from dramatiq.middleware import Shutdown
from pydantic import BaseModel, ConfigDict, Field

from embtune.errors import TaskRefused
from embtune.plugins.base import FineTuningPlugin, RunContext, RunResult


class SleepyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(3, ge=1, le=100_000)
    step_seconds: float = Field(0.01, ge=0, le=10)
    fail: bool = False
    refuse: bool = False
    ignore_cancel: bool = False
    # raise dramatiq's Shutdown at the last step, as a stopping worker does in its threads
    shutdown: bool = False
    # report this verdict, as a real method's evaluation would (the runner promotes on it)
    verdict: Literal["better", "worse", "inconclusive"] | None = None


class SleepyPlugin(FineTuningPlugin):
    name: ClassVar[str] = "sleepy"
    description: ClassVar[str] = "Test plugin: sleeps through its steps."
    uses_clickstream: ClassVar[bool] = False
    params_model: ClassVar[type[BaseModel]] = SleepyParams

    def run(self, ctx: RunContext) -> RunResult:
        params = ctx.params
        assert isinstance(params, SleepyParams)
        if params.refuse:
            raise TaskRefused("refused on purpose: no data")
        for step in range(1, params.steps + 1):
            time.sleep(params.step_seconds)
            if params.ignore_cancel:
                ctx.report(step=step, total_steps=params.steps, message="sleeping")
            else:
                ctx.progress(step, params.steps, "sleeping", loss=1.0 / step)
            if params.fail and step == params.steps:
                raise RuntimeError("failed on purpose")
            if params.shutdown and step == params.steps:
                raise Shutdown("worker shutting down")
        ctx.report(step=params.steps, total_steps=params.steps, message="writing weights")
        (ctx.output_dir / "weights.txt").write_text(f"tuned from {ctx.model.id}\n")
        metrics: dict[str, Any] = {"steps": params.steps}
        if params.verdict is not None:
            metrics["verdict"] = {"verdict": params.verdict, "reason": f"told: {params.verdict}"}
        if ctx.judged is not None:
            metrics["judged_on"] = {"id": ctx.judged.id, "queries": sorted(ctx.judged.queries)}
        return RunResult(metrics=metrics, model_dir=ctx.output_dir)


class ClickCounterPlugin(FineTuningPlugin):
    """Test plugin that trains on the clickstream: reports what its batch holds."""

    name: ClassVar[str] = "click-counter"
    description: ClassVar[str] = "Test plugin: counts the sessions and clicks of its batch."
    params_model: ClassVar[type[BaseModel]] = SleepyParams

    def run(self, ctx: RunContext) -> RunResult:
        assert ctx.data is not None
        sessions = ctx.data.sessions()
        time.sleep(ctx.params.step_seconds)  # type: ignore[attr-defined]
        (ctx.output_dir / "weights.txt").write_text("counted\n")
        metrics = {
            "batch_id": ctx.data.batch_id,
            "sessions": sorted(s.session_id for s in sessions),
            "clicks": sum(len(s.clicks) for s in sessions),
        }
        return RunResult(metrics=metrics, model_dir=ctx.output_dir)
