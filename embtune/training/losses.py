"""The losses a click-trained model can learn with, one strategy per kind of evidence.

A strategy bundles the three choices that must agree with each other: which rows to build from
the sessions, which loss to train on them, and how to batch them. The run picks one strategy by
its `LossKind` (`loss_strategy`) and never branches on the kind again.

* `mnrl` — `MultipleNegativesRankingLoss` on (query, clicked item[, skipped-above item]) rows.
  Contrastive over the whole batch, so every other row's item is a negative for free; the
  skipped-above item adds one hard negative where the session has one. Rows with and without a
  hard negative go into two datasets of the same loss (the trainer's multi-dataset support)
  rather than filling the gaps with random items: a random catalogue item can be relevant to the
  query and would teach the model the opposite of the truth, while in-batch negatives already
  cover the easy cases. Batches come from `NO_DUPLICATES`, because the same query or item in two
  rows of one batch would be used as a negative for itself. Example weights are not used (the
  loss has no per-row weight); the skip-above rule already keeps only confident negatives.
* `click_margin` — `CoSENTLoss` on (query, item, graded score) rows from `build_pairs`. It asks
  only that pairs with a higher score end up more similar than pairs with a lower score, which is
  what clicks support (relative judgements), instead of regressing cosine onto absolute targets
  as `CosineSimilarityLoss` would (pushing every shown-but-unclicked item, usually on-topic, to
  cosine 0 wrecks the geometry). The click confidence enters as ordering between graded
  positives, and irrelevant sessions, which give no positives, still contribute their zeros.
  It uses no in-batch negatives, so repeated queries in a batch are harmless.

Building rows is pure (preflight counts them in the API process); the loss, the datasets and the
sampler import torch, sentence-transformers and datasets inside the methods that need them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from embtune.clickstream.sessions import SearchSession, build_examples, build_pairs
from embtune.training.params import LossKind
from embtune.training.rows import Row, margin_rows, mnrl_rows

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.sampler import BatchSamplers
    from torch import nn


class LossStrategy(ABC):
    """How one kind of click evidence becomes training rows, a loss and batches."""

    kind: ClassVar[LossKind]

    @abstractmethod
    def rows(
        self, sessions: list[SearchSession], catalogue: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """The training rows the training sessions give; pure, no torch."""

    @abstractmethod
    def loss(self, model: SentenceTransformer) -> nn.Module:
        """The loss `model` is trained with."""

    @abstractmethod
    def train_dataset(self, rows: Sequence[Row]) -> Dataset | dict[str, Dataset]:
        """The rows as the trainer's dataset(s)."""

    @abstractmethod
    def batch_sampler(self) -> BatchSamplers:
        """How the trainer groups rows into batches."""


class MnrlLossStrategy(LossStrategy):
    """Contrastive triplets with in-batch negatives (MultipleNegativesRankingLoss)."""

    kind: ClassVar[LossKind] = "mnrl"

    def rows(
        self, sessions: list[SearchSession], catalogue: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        return mnrl_rows(build_examples(sessions), catalogue)

    def loss(self, model: SentenceTransformer) -> nn.Module:
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss,
        )

        return MultipleNegativesRankingLoss(model)

    def train_dataset(self, rows: Sequence[Row]) -> Dataset | dict[str, Dataset]:
        from datasets import Dataset

        with_negative = [dict(row) for row in rows if row.get("negative") is not None]
        without_negative = [
            {"anchor": row["anchor"], "positive": row["positive"]}
            for row in rows
            if row.get("negative") is None
        ]
        datasets = {
            name: Dataset.from_list(subset)
            for name, subset in (("hard_negative", with_negative), ("in_batch", without_negative))
            if subset
        }
        return next(iter(datasets.values())) if len(datasets) == 1 else datasets

    def batch_sampler(self) -> BatchSamplers:
        from sentence_transformers.base.sampler import BatchSamplers

        return BatchSamplers.NO_DUPLICATES


class ClickMarginLossStrategy(LossStrategy):
    """Graded (query, item) pairs ordered by their click scores (CoSENTLoss)."""

    kind: ClassVar[LossKind] = "click_margin"

    def rows(
        self, sessions: list[SearchSession], catalogue: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        return margin_rows(build_pairs(sessions), catalogue)

    def loss(self, model: SentenceTransformer) -> nn.Module:
        from sentence_transformers.sentence_transformer.losses import CoSENTLoss

        return CoSENTLoss(model)

    def train_dataset(self, rows: Sequence[Row]) -> Dataset | dict[str, Dataset]:
        from datasets import Dataset

        return Dataset.from_list([dict(row) for row in rows])

    def batch_sampler(self) -> BatchSamplers:
        from sentence_transformers.base.sampler import BatchSamplers

        return BatchSamplers.BATCH_SAMPLER


_STRATEGIES: dict[str, LossStrategy] = {
    strategy.kind: strategy for strategy in (MnrlLossStrategy(), ClickMarginLossStrategy())
}


def loss_strategy(loss: LossKind | LossStrategy) -> LossStrategy:
    """The strategy for a loss kind (a strategy is returned as it is)."""
    if isinstance(loss, LossStrategy):
        return loss
    try:
        return _STRATEGIES[loss]
    except KeyError:
        raise ValueError(f"unknown loss kind {loss!r}") from None
