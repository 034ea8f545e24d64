"""The built-in fine-tuning methods: a sentence-transformers model trained on search clicks.

Both methods share one run (`embtune.training.run`) and differ only in the loss
(`embtune.training.losses`); this module only makes them plugins: their names, their params
and the adapter from a `RunContext` to the run's plain callbacks. The API process imports it to
list plugins and to run preflight, so nothing here imports torch; the run does, when it loads the
model.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from embtune.errors import TaskRefused
from embtune.plugins.base import (
    Estimating,
    FineTuningPlugin,
    RunContext,
    RunResult,
    TrainingData,
)
from embtune.training.model_card import CardFacts
from embtune.training.params import LossKind, SentenceTransformerParams
from embtune.training.preflight import preflight
from embtune.training.run import train_on_clicks


class SentenceTransformerClickPlugin(FineTuningPlugin):
    """Shared run of the click-trained sentence-transformers methods; subclasses pick the loss."""

    loss_kind: ClassVar[LossKind]
    params_model: ClassVar[type[BaseModel]] = SentenceTransformerParams

    def preflight(
        self, params: BaseModel, data: TrainingData | None, estimating: Estimating | None = None
    ) -> dict[str, Any]:
        if data is None:
            return {"would_refuse": True, "estimated_seconds": None,
                    "reason": "no clickstream to train on yet"}
        hints = estimating or Estimating()
        return preflight(
            data, self._params(params), self.loss_kind,
            rates=hints.rates, source_dir=hints.source_dir, cache_dir=hints.cache_dir,
        )

    def _params(self, params: BaseModel) -> SentenceTransformerParams:
        if isinstance(params, SentenceTransformerParams):
            return params
        return SentenceTransformerParams.model_validate(params.model_dump())

    def run(self, ctx: RunContext) -> RunResult:
        params = self._params(ctx.params)
        if ctx.data is None:
            raise TaskRefused("no training data: the task has no clickstream to train on")
        metrics = train_on_clicks(
            data=ctx.data,
            params=params,
            loss=self.loss_kind,
            source=ctx.model.source,
            output_dir=ctx.output_dir,
            card=CardFacts(self.name, ctx.model.name, ctx.model.id, ctx.task_id),
            report=ctx.report,
            should_stop=ctx.should_stop,
            cache_dir=ctx.cache_dir,
            judged=ctx.judged,
            rates=ctx.rates,
            hooks=ctx.hooks,
        )
        return RunResult(model_dir=ctx.output_dir, metrics=metrics)


class ClickstreamMNRLPlugin(SentenceTransformerClickPlugin):
    name: ClassVar[str] = "sentence-transformers-mnrl"
    description: ClassVar[str] = (
        "Contrastive fine-tuning on (query, clicked item, skipped-above item) triplets with "
        "in-batch negatives (MultipleNegativesRankingLoss). The default method."
    )
    loss_kind: ClassVar[LossKind] = "mnrl"


class ClickMarginPlugin(SentenceTransformerClickPlugin):
    name: ClassVar[str] = "click-margin"
    description: ClassVar[str] = (
        "Ranking fine-tuning on graded (query, item) pairs: clicks weighted by their rank, "
        "skipped items and irrelevant sessions as zeros (CoSENTLoss)."
    )
    loss_kind: ClassVar[LossKind] = "click_margin"
