"""The built-in fine-tuning methods: a sentence-transformers model trained on search clicks.

Both methods share one run — split the sessions, build rows, evaluate the source model, train,
evaluate the tuned model on the same held-out sessions — and differ only in the loss (see
`embtune.training.trainer`). This module is imported by the API process to list plugins and to
run preflight, so it imports nothing heavy at module level: torch, sentence-transformers and
datasets are imported inside `run`.

What keeps a run fast (each lever in its own module, all reported in `metrics["performance"]`):
the precision chosen for the hardware (`embtune.training.precision`), catalogue embeddings cached
per model so a model already evaluated on this catalogue is not encoded again
(`embtune.training.embedding_cache`, when the runner gives a `cache_dir`), chunked exact search in
bounded memory and length-sorted encoding (`embtune.training.evaluation`), and at most
`eval_max_queries` validation queries.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, Field

from embtune import allocator
from embtune.clickstream.sessions import (
    Session,
    build_examples,
    build_pairs,
    relevance,
    split_sessions,
)
from embtune.errors import TaskRefused
from embtune.plugins.base import FineTuningPlugin, RunContext, RunResult, TrainingData
from embtune.training.params import LossKind, TrainParams
from embtune.training.rows import margin_rows, mnrl_rows

if TYPE_CHECKING:
    from embtune.training.embedding_cache import CacheKey, EmbeddingCache
    from embtune.training.evaluation import RetrievalReport
    from embtune.training.trainer import TrainOutcome

# Measured on 2 CPU cores with all-MiniLM-L6-v2 at batch 32 and max_seq_length 256; time is
# assumed to grow linearly with max_seq_length (texts shorter than it cost less, so this errs
# high). A GPU is far faster; a CPU shared with other work can be several times slower.
TRAIN_EXAMPLES_PER_S = 4.3
ENCODE_DOCUMENTS_PER_S = 27.0
REFERENCE_SEQ_LENGTH = 256

# Overall progress is reported on this scale; the training step is in `train_step` (extra).
PROGRESS_UNITS = 1000
# Weights (in estimated seconds) of the phases whose cost does not grow with the data.
_LOAD_WEIGHT_S = 5.0  # importing torch and reading the weights
_SAVE_WEIGHT_S = 1.0


class SentenceTransformerParams(TrainParams):
    """The shared training hyper-parameters, plus how the source and tuned models are evaluated."""

    eval_batch_size: int = Field(64, ge=1, le=1024)
    eval_max_queries: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Validation queries evaluated at most; more are sampled (seeded by `seed`).",
    )


@dataclass(frozen=True)
class _Prepared:
    """What a run would train and evaluate on; computed the same way by preflight and `run`."""

    sessions: int
    clicks: int
    clicked_items_without_text: int
    train_sessions: int
    validation_sessions: int
    rows: list[dict[str, Any]]
    catalogue: dict[str, str]
    queries: dict[str, str]  # evaluated validation queries (a clicked, catalogued item each)
    relevant: dict[str, set[str]]
    validation_queries_total: int  # all validation queries with a clicked, catalogued item

    def figures(self) -> str:
        return (
            f"{self.sessions} sessions, {self.clicks} clicks, {len(self.rows)} training examples, "
            f"{self.validation_sessions} validation sessions, "
            f"{self.clicked_items_without_text} clicked items with no text"
        )


def _prepare(
    data: TrainingData, params: SentenceTransformerParams, loss_kind: LossKind
) -> _Prepared:
    sessions = data.sessions()
    catalogue = data.item_texts()
    train, validation = split_sessions(sessions, params.validation_fraction, params.seed)
    rows = _rows(train, catalogue, loss_kind)
    clicked = {object_id for session in sessions for object_id in session.clicks}
    queries, relevant = relevance(validation)
    # A click on an item the catalogue lacks cannot be retrieved by any model; judging only
    # catalogued items keeps such gaps from diluting both sides of the comparison.
    relevant = {
        query_id: found
        for query_id, ids in relevant.items()
        if (found := {object_id for object_id in ids if object_id in catalogue})
    }
    evaluated = sample_queries(list(relevant), params.eval_max_queries, params.seed)
    return _Prepared(
        sessions=len(sessions),
        clicks=sum(len(session.clicks) for session in sessions),
        clicked_items_without_text=len(clicked - catalogue.keys()),
        train_sessions=len(train),
        validation_sessions=len(validation),
        rows=rows,
        catalogue=catalogue,
        queries={query_id: queries[query_id] for query_id in evaluated},
        relevant={query_id: relevant[query_id] for query_id in evaluated},
        validation_queries_total=len(relevant),
    )


def sample_queries(query_ids: list[str], limit: int, seed: int) -> list[str]:
    """At most `limit` of `query_ids`, in their original order; the same ids and seed give the
    same sample, so a restarted task is judged on the same queries.

    Evaluation cost grows with the queries only a little (they are short, and the catalogue is
    encoded once whatever their number), but per-query bookkeeping and the score matrices grow
    with them; 1000 queries put the standard error of nDCG@10 near 0.01.
    """
    if len(query_ids) <= limit:
        return list(query_ids)
    chosen = set(random.Random(seed).sample(sorted(query_ids), limit))
    return [query_id for query_id in query_ids if query_id in chosen]


def _rows(
    sessions: list[Session], catalogue: Mapping[str, str], loss_kind: LossKind
) -> list[dict[str, Any]]:
    if loss_kind == "mnrl":
        return mnrl_rows(build_examples(sessions), catalogue)
    if loss_kind == "click_margin":
        return margin_rows(build_pairs(sessions), catalogue)
    raise ValueError(f"unknown loss kind {loss_kind!r}")


def _refusal(prepared: _Prepared, params: TrainParams) -> str | None:
    """Why a run on this data would be refused, or None; the same answer for preflight and run."""
    if prepared.sessions == 0:
        return "no search sessions to train on"
    if len(prepared.rows) < params.min_examples:
        return (
            f"too few training examples: {len(prepared.rows)}, at least {params.min_examples} "
            f"are needed ({prepared.figures()})"
        )
    if not prepared.queries:
        return (
            "no validation session has a click on a catalogued item, so the tuned model could not "
            f"be compared with the source model ({prepared.figures()})"
        )
    return None


def _length_scale(tokens: int) -> float:
    return tokens / REFERENCE_SEQ_LENGTH


def _training_seconds(examples: int, params: TrainParams) -> float:
    return (
        params.epochs * examples / TRAIN_EXAMPLES_PER_S
        * _length_scale(params.training_seq_length)
    )


def _encoding_seconds(documents: int, params: TrainParams) -> float:
    return documents / ENCODE_DOCUMENTS_PER_S * _length_scale(params.max_seq_length)


def preflight(
    data: TrainingData, params: SentenceTransformerParams, loss_kind: LossKind
) -> dict[str, Any]:
    """What a run would train on, roughly how long it would take on CPU, and whether it would be
    refused (with the same reason `run` would give)."""
    prepared = _prepare(data, params, loss_kind)
    examples = len(prepared.rows)
    items = len(prepared.catalogue)
    # The catalogue is encoded twice (source and tuned model) unless the source model's vectors
    # are cached, which preflight does not look up; queries are short and few.
    seconds = 2 * _encoding_seconds(items, params) + _training_seconds(examples, params)
    reason = _refusal(prepared, params)
    return {
        "sessions": prepared.sessions,
        "clicks": prepared.clicks,
        "examples": examples,
        "validation_sessions": prepared.validation_sessions,
        "clicked_items_without_text": prepared.clicked_items_without_text,
        "items": items,
        "estimated_seconds": round(seconds, 1),
        "would_refuse": reason is not None,
        "reason": reason,
    }


class _PhaseProgress:
    """Reports one overall progress across phases, each phase's share proportional to its
    estimated duration, so training dominates the bar when it dominates the run."""

    def __init__(self, ctx: RunContext, weights: Mapping[str, float]) -> None:
        self._ctx = ctx
        total = sum(weights.values()) or 1.0
        self._spans: dict[str, tuple[float, float]] = {}
        start = 0.0
        for phase, weight in weights.items():
            self._spans[phase] = (start, weight / total)
            start += weight / total

    def report(self, phase: str, fraction: float = 0.0, **extra: Any) -> None:
        start, width = self._spans[phase]
        overall = start + width * min(max(fraction, 0.0), 1.0)
        step = min(round(overall * PROGRESS_UNITS), PROGRESS_UNITS)
        self._ctx.progress(step, PROGRESS_UNITS, phase, **extra)


class SentenceTransformerClickPlugin(FineTuningPlugin):
    """Shared run of the click-trained sentence-transformers methods; subclasses pick the loss."""

    loss_kind: ClassVar[LossKind]
    params_model: ClassVar[type[BaseModel]] = SentenceTransformerParams

    def preflight(self, params: BaseModel, data: TrainingData | None) -> dict[str, Any]:
        if data is None:
            return {"would_refuse": True, "estimated_seconds": None,
                    "reason": "no clickstream to train on yet"}
        return preflight(data, self._params(params), self.loss_kind)

    def _params(self, params: BaseModel) -> SentenceTransformerParams:
        if isinstance(params, SentenceTransformerParams):
            return params
        return SentenceTransformerParams.model_validate(params.model_dump())

    def run(self, ctx: RunContext) -> RunResult:
        params = self._params(ctx.params)
        if ctx.data is None:
            raise TaskRefused("no training data: the task has no clickstream to train on")
        clock = _PhaseClock()
        ctx.progress(0, PROGRESS_UNITS, "building examples")
        with clock.phase("examples"):
            prepared = _prepare(ctx.data, params, self.loss_kind)
        # Refused before loading the model: a refusal should cost nothing.
        reason = _refusal(prepared, params)
        if reason is not None:
            raise TaskRefused(reason)

        ctx.progress(0, PROGRESS_UNITS, "loading model")
        with clock.phase("load"):
            # Heavy imports here, not at module level: importing torch takes seconds.
            from embtune.artifacts import resolve_source
            from embtune.training.evaluation import evaluate_retrieval
            from embtune.training.models import load_model
            from embtune.training.precision import resolve_precision
            from embtune.training.stop_checks import stop_checks
            from embtune.training.trainer import fine_tune

            try:
                source_dir = resolve_source(ctx.model.source)
                model = load_model(ctx.model.source, params.max_seq_length)
            except ValueError as exc:  # a missing or unknown source: retrying cannot help
                raise TaskRefused(
                    f"source model {ctx.model.source!r} cannot be loaded: {exc}"
                ) from None
            precision = resolve_precision(params.precision, model.device.type)
            # Identifying the model (a content hash of its files) is part of loading it.
            cache = _CatalogueCache.open(
                ctx.cache_dir, prepared.catalogue, params.max_seq_length, precision.encode
            )
            source_key = cache.key_for(source_dir)

        encode_s = _encoding_seconds(len(prepared.catalogue) + len(prepared.queries), params)
        source_encode_s = (
            _encoding_seconds(len(prepared.queries), params) if cache.has(source_key) else encode_s
        )
        phases = _PhaseProgress(
            ctx,
            {
                "loading model": _LOAD_WEIGHT_S,
                "evaluating source model": source_encode_s,
                "training": _training_seconds(len(prepared.rows), params),
                "evaluating tuned model": encode_s,
                "saving": _SAVE_WEIGHT_S,
            },
        )

        def evaluate(phase: str, key: CacheKey | None) -> RetrievalReport:
            phases.report(phase)
            return evaluate_retrieval(
                model,
                prepared.queries,
                prepared.catalogue,
                prepared.relevant,
                batch_size=params.eval_batch_size,
                precision=precision.encode,
                cache=cache.store,
                cache_key=key,
                on_progress=lambda fraction: phases.report(phase, fraction),
            )

        # From here on the model runs: a cancel stops it inside a forward or backward pass (a
        # training step or an encoding batch of long texts takes seconds on a CPU), not after.
        with stop_checks(model, ctx.should_stop):
            with clock.phase("evaluate_source"):
                before = evaluate("evaluating source model", source_key)
            # The tuned model's evaluation takes as long as the source's, unless that was cached.
            tuned_evaluation_s = (
                encode_s if before.corpus_cache == "hit" else clock.seconds["evaluate_source"]
            )

            def on_training_progress(info: Mapping[str, Any]) -> None:
                # eta_s is to the end of the run: the trainer's estimate plus one more evaluation.
                train_eta = info.get("eta_s")
                phases.report(
                    "training",
                    float(info.get("fraction", 0.0)),
                    train_step=int(info["step"]),
                    train_total_steps=int(info["total_steps"]),
                    epoch=info.get("epoch"),
                    loss=info.get("loss"),
                    eta_s=None if train_eta is None else float(train_eta) + tuned_evaluation_s,
                )

            phases.report("training", train_step=0)
            with clock.phase("train"):
                outcome = fine_tune(
                    model,
                    prepared.rows,
                    self.loss_kind,
                    params,
                    ctx.output_dir,
                    on_training_progress,
                    ctx.should_stop,
                )
            # fine_tune also saved the weights; that time belongs to "save".
            clock.seconds["train"] -= outcome.save_s

            with clock.phase("evaluate_tuned"):
                # Keyed by the saved weights, so the next task tuning this model finds its vectors.
                after = evaluate("evaluating tuned model", cache.key_for(ctx.output_dir))

        phases.report("saving")
        with clock.phase("save"):
            performance = _performance(precision.to_dict(), cache, prepared, before, after)
            metrics = _metrics(self.name, params, prepared, before, after, outcome, performance)
            _write_model_card(ctx, self.name, metrics)
        clock.seconds["save"] += outcome.save_s
        performance.update(clock.summary())
        phases.report("saving", 1.0)
        return RunResult(model_dir=ctx.output_dir, metrics=metrics)


class _PhaseClock:
    """Wall time and peak resident memory after each phase of a run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = time.monotonic() - started
            peak = peak_rss_mb()
            if peak is not None:
                self.peak_rss_mb[name] = peak

    def summary(self) -> dict[str, Any]:
        order = ("load", "examples", "evaluate_source", "train", "evaluate_tuned", "save")
        phases = {name: round(self.seconds[name], 3) for name in order if name in self.seconds}
        return {
            "phases_s": phases,
            "total_s": round(sum(self.seconds.values()), 3),
            "peak_rss_mb": dict(self.peak_rss_mb),
        }


def peak_rss_mb() -> float | None:
    """The process's peak resident set so far (MiB); None where the OS does not say."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


@dataclass
class _CatalogueCache:
    """The run's view of the embedding cache: one catalogue, one length, one precision."""

    store: EmbeddingCache | None
    max_seq_length: int
    precision: str
    texts_sha256: str | None
    items: int
    key_s: float = 0.0  # time spent fingerprinting models and hashing the catalogue

    @classmethod
    def open(
        cls, root: Path | None, catalogue: Mapping[str, str], max_seq_length: int, precision: str
    ) -> _CatalogueCache:
        from embtune.training.embedding_cache import EmbeddingCache, texts_sha256

        if root is None:
            return cls(None, max_seq_length, precision, None, len(catalogue))
        started = time.monotonic()
        digest = texts_sha256(catalogue.values())
        return cls(
            EmbeddingCache(root),
            max_seq_length,
            precision,
            digest,
            len(catalogue),
            time.monotonic() - started,
        )

    def key_for(self, model_dir: Path) -> CacheKey | None:
        if self.store is None or self.texts_sha256 is None:
            return None
        from embtune.training.embedding_cache import CacheKey, fingerprint_model_dir

        started = time.monotonic()
        try:
            fingerprint = fingerprint_model_dir(model_dir)
        except OSError:  # an unreadable file: this model goes uncached, the run goes on
            return None
        finally:
            self.key_s += time.monotonic() - started
        return CacheKey(
            fingerprint, self.max_seq_length, self.precision, self.texts_sha256, self.items
        )

    def has(self, key: CacheKey | None) -> bool:
        return self.store is not None and key is not None and self.store.contains(key)


def _performance(
    precision: dict[str, Any],
    cache: _CatalogueCache,
    prepared: _Prepared,
    before: RetrievalReport,
    after: RetrievalReport,
) -> dict[str, Any]:
    """How fast the run went and why; the phase timings are added once the run has saved."""
    encoded = after.timings_s.get("corpus") if after.corpus_cache != "hit" else None
    return {
        "precision": precision,
        "allocator": allocator.mode(),
        "cache": {
            "enabled": cache.store is not None,
            "source_hit": before.corpus_cache == "hit",
            "source": before.corpus_cache,
            "tuned": after.corpus_cache,
            "key_s": round(cache.key_s, 3),
        },
        "eval_queries": len(prepared.queries),
        "validation_queries_total": prepared.validation_queries_total,
        "encode_items_per_s": (
            round(len(prepared.catalogue) / encoded, 2) if encoded else None
        ),
    }


def _metrics(
    method: str,
    params: SentenceTransformerParams,
    prepared: _Prepared,
    before: RetrievalReport,
    after: RetrievalReport,
    outcome: TrainOutcome,
    performance: dict[str, Any],
) -> dict[str, Any]:
    from embtune.training.evaluation import compare_reports

    return {
        "before": before.metrics,
        "after": after.metrics,
        "delta": {name: after.metrics[name] - value for name, value in before.metrics.items()},
        "per_query": compare_reports(before, after, prepared.queries),
        "data": {
            "sessions": prepared.sessions,
            "train_sessions": prepared.train_sessions,
            "validation_sessions": prepared.validation_sessions,
            "validation_queries": len(prepared.queries),  # evaluated (per_query adds up to it)
            "validation_queries_total": prepared.validation_queries_total,  # before sampling
            "examples": len(prepared.rows),
            "clicks": prepared.clicks,
            "clicked_items_without_text": prepared.clicked_items_without_text,
            "items": len(prepared.catalogue),
        },
        "training": {
            "steps": outcome.steps,
            "train_loss": outcome.train_loss,
            "runtime_s": outcome.runtime_s,
            "examples_per_s": (
                outcome.rows * params.epochs / outcome.runtime_s if outcome.runtime_s else None
            ),
            "precision": outcome.precision,
        },
        "performance": performance,
        "method": method,
        "params": params.model_dump(),
    }


def _write_model_card(ctx: RunContext, method: str, metrics: Mapping[str, Any]) -> None:
    """Replace the README that `model.save` copied from the source model: it would describe the
    source as if it were this model. Aggregates only; no query text goes into the card."""
    lines = [
        f"# {ctx.model.name}, fine-tuned on search clicks",
        "",
        f"Trained by embtune with the `{method}` method from source model `{ctx.model.name}` "
        f"(id `{ctx.model.id}`, task `{ctx.task_id}`). The source model's own card states its "
        "license and intended use, which this model inherits.",
        "",
        "Retrieval on held-out search sessions, over the whole catalogue "
        f"({metrics['data']['validation_queries']} of "
        f"{metrics['data']['validation_queries_total']} "
        "validation queries):",
        "",
        "| metric | source | tuned |",
        "|---|---|---|",
        *(
            f"| {name} | {value:.4f} | {metrics['after'][name]:.4f} |"
            for name, value in metrics["before"].items()
        ),
        "",
        "Parameters:",
        "",
        "```json",
        json.dumps(metrics["params"], indent=2, sort_keys=True),
        "```",
        "",
    ]
    Path(ctx.output_dir, "README.md").write_text("\n".join(lines), encoding="utf-8")


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
