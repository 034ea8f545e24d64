"""A method that never trains: for models registered only to embed or to compare against."""

from __future__ import annotations

from typing import ClassVar

from embtune.plugins.base import FineTuningPlugin, RunContext, RunResult


class FrozenPlugin(FineTuningPlugin):
    name: ClassVar[str] = "frozen"
    description: ClassVar[str] = (
        "Serve the model as it is. Tasks on a frozen model are rejected with 400."
    )
    trainable: ClassVar[bool] = False

    def run(self, ctx: RunContext) -> RunResult:
        raise RuntimeError("a frozen model is never trained")
