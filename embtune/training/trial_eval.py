"""A search trial's mid-training evaluation: what the pruner decides on.

Ranking the whole catalogue several times per trial would cost more than the training it saves
on a large catalogue, so each evaluation ranks a fixed pool instead: for a seeded sample of the
validation queries (the judged set's when the task has one, else held-out clicks), the source
model's top candidates and the queries' relevant items. The pool is built once per trial from
the source model's ranking the run already made, so every evaluation of every trial of a task
ranks the same texts and their values compare. The figure is the same retrieval metric
(`evaluation.score_ranking`) as the run's report, over that pool.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Any

from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from embtune.training.data import Prepared
from embtune.training.evaluation import CatalogueRanking, rank_catalogue, score_ranking
from embtune.training.hooks import TrainingHooks
from embtune.training.ir_metrics import METRIC_NAMES
from embtune.training.precision import Resolved
from embtune.training.trial import TrialReporter

# Source-model candidates per query in the pool: enough that a model which learned something
# moves relevant items up among plausible competitors, few enough to encode in seconds.
POOL_CANDIDATES = 20
STEPS_PER_EPOCH = 100  # reported steps are hundredths of an epoch


@dataclass(frozen=True)
class EvaluationPool:
    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]]
    grades: dict[str, dict[str, int]] | None


def evaluation_pool(
    prepared: Prepared, before: CatalogueRanking, max_queries: int, seed: int
) -> EvaluationPool | None:
    """The pool described above; None when there is no validation query to evaluate."""
    judged = prepared.judged
    if judged is not None and judged.queries:
        texts = {f"j:{key}": text for key, text in judged.queries.items()}
        relevant = {f"j:{key}": found for key, found in judged.relevant().items()}
        grades: dict[str, dict[str, int]] | None = {
            f"j:{key}": graded for key, graded in judged.grades.items()
        }
    else:
        texts = {f"c:{key}": text for key, text in prepared.queries.items()}
        relevant = {f"c:{key}": found for key, found in prepared.relevant.items()}
        grades = None
    ids = sorted(qid for qid in texts if relevant.get(qid) and qid in before.hits)
    if not ids:
        return None
    if len(ids) > max_queries:
        ids = sorted(random.Random(seed).sample(ids, max_queries))
    pool: dict[str, None] = {}
    for qid in ids:
        pool.update(dict.fromkeys(before.hits[qid][:POOL_CANDIDATES]))
        pool.update(dict.fromkeys(sorted(relevant[qid])))
    corpus = {oid: prepared.catalogue[oid] for oid in pool if oid in prepared.catalogue}
    return EvaluationPool(
        queries={qid: texts[qid] for qid in ids},
        corpus=corpus,
        relevant={qid: relevant[qid] for qid in ids},
        grades={qid: grades.get(qid, {}) for qid in ids} if grades is not None else None,
    )


class TrialEvaluationCallback(TrainerCallback):
    """Evaluates the model on the pool `evaluations_per_epoch` times an epoch (the last one at
    each epoch's end) and reports to the trial, which may prune it (`TrialPruned` unwinds the
    trainer; the search run cleans up)."""

    def __init__(
        self,
        reporter: TrialReporter,
        model: SentenceTransformer,
        pool: EvaluationPool,
        *,
        batch_size: int,
        precision: Resolved,
    ) -> None:
        self._reporter = reporter
        self._model = model
        self._pool = pool
        self._batch_size = batch_size
        self._precision = precision
        self._metric = reporter.metric if reporter.metric in METRIC_NAMES else "ndcg@10"
        self._per_epoch = max(1, reporter.evaluations_per_epoch)
        self._done = 0  # evaluation points passed

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # state.epoch is fractional (epoch + share of the epoch done) after each step; a float's
        # 0.9999 at an epoch's last step counts as its end
        point = math.floor(float(state.epoch or 0.0) * self._per_epoch + 1e-6)
        if point <= self._done:
            return
        self._done = point
        step = round(point * STEPS_PER_EPOCH / self._per_epoch)
        self._reporter.report(step, self.evaluate())

    def evaluate(self) -> float:
        ranking = rank_catalogue(
            self._model,
            self._pool.queries,
            self._pool.corpus,
            self._batch_size,
            precision=self._precision,
        )
        report = score_ranking(
            ranking, list(self._pool.queries), self._pool.relevant, self._pool.grades
        )
        return float(report.metrics[self._metric])


def with_trial_evaluation(
    hooks: TrainingHooks,
    model: SentenceTransformer,
    prepared: Prepared,
    before: CatalogueRanking,
    *,
    batch_size: int,
    precision: Resolved,
) -> TrainingHooks:
    """`hooks` plus the trial's evaluation callback (unchanged when not a trial, or when there
    is nothing to evaluate mid-training: the trial then only reports its final value)."""
    reporter = hooks.trial
    if reporter is None:
        return hooks
    pool = evaluation_pool(prepared, before, reporter.eval_queries, reporter.seed)
    if pool is None:
        return hooks
    callback = TrialEvaluationCallback(
        reporter, model, pool, batch_size=batch_size, precision=precision
    )
    return replace(hooks, callbacks=[*hooks.callbacks, callback])
