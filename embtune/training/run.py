"""One click-training run, phase by phase: examples → evaluate source → train → evaluate tuned
→ save.

Split the sessions and build rows, evaluate the source model on the held-out sessions, train,
evaluate the tuned model on the same sessions, write the model card. The run talks to the outside
through two plain callbacks (`report` for progress, `should_stop` for cancellation), so it knows
nothing of tasks, HTTP or SQL; a plugin adapts its `RunContext` to them.

Importing this module is cheap: torch, sentence-transformers and datasets are imported when the
model is loaded, since the API process imports the plugins to list them and run preflight.

What keeps a run fast (each lever in its own module, all reported in `metrics["performance"]`):
the precision chosen for the hardware (`embtune.training.precision`), catalogue embeddings cached
per model so a model already evaluated on this catalogue is not encoded again
(`embtune.training.embedding_cache`, when the caller gives a `cache_dir`), chunked exact search
in bounded memory and length-sorted encoding (`embtune.training.evaluation`), and at most
`eval_max_queries` validation queries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embtune import allocator
from embtune.errors import TaskRefused, TaskStopped
from embtune.training.catalogue_cache import CatalogueCache
from embtune.training.data import ClickData, Prepared, prepare, refusal
from embtune.training.losses import LossStrategy, loss_strategy
from embtune.training.model_card import CardFacts, write_model_card
from embtune.training.params import LossKind, SentenceTransformerParams
from embtune.training.phases import PROGRESS_UNITS, PhaseClock, PhaseProgress
from embtune.training.preflight import estimate_phases, workload
from embtune.training.throughput import PhaseSeconds, Workload, model_params_of, run_samples

if TYPE_CHECKING:
    from embtune.domain.evaluation_sets import JudgedSet
    from embtune.domain.throughput import MeasuredRates
    from embtune.training.embedding_cache import CacheKey
    from embtune.training.evaluation import CatalogueRanking
    from embtune.training.flops import PassCount
    from embtune.training.hooks import TrainingHooks
    from embtune.training.precision import Precision
    from embtune.training.trainer import TrainOutcome

# Weights (in estimated seconds) of the phases whose cost does not grow with the data.
LOAD_WEIGHT_S = 5.0  # importing torch and reading the weights
SAVE_WEIGHT_S = 1.0


def train_on_clicks(
    *,
    data: ClickData,
    params: SentenceTransformerParams,
    loss: LossKind | LossStrategy,
    source: str,
    output_dir: Path,
    card: CardFacts,
    report: Callable[..., None],
    should_stop: Callable[[], bool],
    cache_dir: Path | None = None,
    judged: JudgedSet | None = None,
    rates: MeasuredRates | None = None,
    hooks: TrainingHooks | None = None,
) -> dict[str, Any]:
    """Run every phase and return the run's metrics; the tuned model is saved in `output_dir`.

    `source` is the source model (`builtin:<alias>` or a directory). `report` is called with
    `step`, `total_steps`, `message` and extra fields by keyword; after each report, and inside
    the model's passes while it runs, a true `should_stop()` raises `TaskStopped`. A run that
    cannot succeed on this data or source raises `TaskRefused` before it costs anything more.
    With `judged`, the verdict is decided on that evaluation set; without, on held-out clicks.
    `rates` (what this host measured before for the model's size) weigh the phases and give the
    ETA; without them, fixed constants do. `hooks` (checkpoints, extra trainer callbacks) go
    to the trainer as they are.
    """
    strategy = loss_strategy(loss)

    at_step = [0]  # the bar's position, for a message that does not move it

    def progress(step: int, total_steps: int, message: str, **extra: Any) -> None:
        at_step[0] = step
        report(step=step, total_steps=total_steps, message=message, **extra)
        if should_stop():
            raise TaskStopped("task was canceled or taken over")

    clock = PhaseClock()
    progress(0, PROGRESS_UNITS, "building examples")
    with clock.phase("examples"):
        prepared = prepare(data, params, strategy, judged)
    # Refused before loading the model: a refusal should cost nothing.
    reason = refusal(prepared, params)
    if reason is not None:
        raise TaskRefused(reason)

    progress(0, PROGRESS_UNITS, "loading model")
    with clock.phase("load"):
        # Heavy imports here, not at module level: importing torch takes seconds.
        loading = time.monotonic()
        from embtune.artifacts import resolve_source
        from embtune.training.evaluation import rank_catalogue
        from embtune.training.flops import FlopCounter
        from embtune.training.judging import judge
        from embtune.training.models import load_model
        from embtune.training.precision import resolve_precision
        from embtune.training.stop_checks import stop_checks
        from embtune.training.trainer import fine_tune

        # What only a process's first run pays (imports, the host's peak probe) is kept out of
        # the fixed-cost sample the next estimates are made from.
        once_per_process_s = time.monotonic() - loading
        try:
            source_dir = resolve_source(source)
            model = load_model(source, params.max_seq_length)
        except ValueError as exc:  # a missing or unknown source: retrying cannot help
            raise TaskRefused(f"source model {source!r} cannot be loaded: {exc}") from None
        precision = resolve_precision(params.precision, model.device.type)
        # Measured once per host and cached (a worker measures it at start); a fraction of it
        # is each phase's utilization.
        probing = time.monotonic()
        peaks = host_peaks_for(cache_dir, model.device.type)
        once_per_process_s += time.monotonic() - probing
        # Identifying the model (a content hash of its files) is part of loading it.
        cache = CatalogueCache.open(
            cache_dir, prepared.catalogue, params.max_seq_length, precision.encode
        )
        source_key = cache.key_for(source_dir)

    queries = prepared.evaluation_queries()
    keep = prepared.shown_items()
    model_params = model_params_of(source_dir) or sum(p.numel() for p in model.parameters())
    planned = workload(prepared, params)
    expected = estimate_phases(
        prepared, params, planned, rates, source_cached=cache.has(source_key)
    )
    # the bar's shares: a phase of a fixed cost gets a constant where nothing was measured
    fixed = expected.fixed / 2 if expected.fixed else None
    phases = PhaseProgress(
        progress,
        {
            "loading model": fixed or LOAD_WEIGHT_S,
            "evaluating source model": expected.evaluate_source,
            "training": expected.train,
            "evaluating tuned model": expected.evaluate_tuned,
            "saving": fixed or SAVE_WEIGHT_S,
        },
    )

    def evaluate(phase: str, key: CacheKey | None) -> CatalogueRanking:
        phases.report(phase)
        return rank_catalogue(
            model,
            queries,
            prepared.catalogue,
            batch_size=params.eval_batch_size,
            keep=keep,
            precision=precision.encode,
            cache=cache.store,
            cache_key=key,
            on_progress=lambda fraction: phases.report(phase, fraction),
        )

    # From here on the model runs: a cancel stops it inside a forward or backward pass (a
    # training step or an encoding batch of long texts takes seconds on a CPU), not after.
    work: dict[str, PassCount] = {}
    with stop_checks(model, should_stop), FlopCounter(model) as flops:
        with clock.phase("evaluate_source"):
            before = evaluate("evaluating source model", source_key)
        work["evaluate_source"] = flops.take()
        # The tuned model's evaluation takes as long as the source's, unless that was cached.
        if before.corpus_cache != "hit":
            phases.revise("evaluating tuned model", clock.seconds["evaluate_source"])
        if hooks is not None and hooks.trial is not None:  # a search trial: pruned on the way
            from embtune.training.trial_eval import with_trial_evaluation

            hooks = with_trial_evaluation(
                hooks, model, prepared, before,
                batch_size=params.eval_batch_size, precision=precision.encode,
            )

        def on_training_progress(info: Mapping[str, Any]) -> None:
            # eta_s is to the end of the run: the trainer's estimate plus the phases after it.
            train_eta = info.get("eta_s")
            phases.report(
                "training",
                float(info.get("fraction", 0.0)),
                phase_left_s=None if train_eta is None else float(train_eta),
                train_step=int(info["step"]),
                train_total_steps=int(info["total_steps"]),
                epoch=info.get("epoch"),
                loss=info.get("loss"),
            )

        phases.report("training", train_step=0)

        def on_resume(step: int, total: int) -> None:
            # a message of its own, so the task's events say where this run picked up
            progress(at_step[0], PROGRESS_UNITS, f"resumed from step {step} of {total}",
                     train_step=step, train_total_steps=total)
        with clock.phase("train"):
            outcome = fine_tune(
                model,
                prepared.rows,
                strategy,
                params,
                output_dir,
                on_training_progress,
                should_stop,
                hooks=hooks,
                on_resume=on_resume,
            )
        # fine_tune also saved the weights; that time belongs to "save".
        clock.seconds["train"] -= outcome.save_s
        work["train"] = flops.take()

        with clock.phase("evaluate_tuned"):
            # Keyed by the saved weights, so the next task tuning this model finds its vectors.
            after = evaluate("evaluating tuned model", cache.key_for(output_dir))
        work["evaluate_tuned"] = flops.take()

    phases.report("saving")
    with clock.phase("save"):
        performance = _performance(precision.to_dict(), cache, prepared, before, after)
        judgement = judge(prepared, before, after, params.seed)
        metrics = _metrics(card.method, params, prepared, judgement, outcome, performance)
        write_model_card(output_dir, card, metrics)
    clock.seconds["save"] += outcome.save_s
    performance.update(clock.summary())
    performance["throughput"] = _throughput(
        planned, params, precision.to_dict(), model_params, before, expected,
        {**clock.seconds, "load": clock.seconds["load"] - once_per_process_s},
    )
    performance["throughput"]["once_per_process_s"] = round(once_per_process_s, 3)
    performance["utilization"] = _utilization(peaks, work, clock.seconds, precision)
    phases.report("saving", 1.0)
    return metrics


def _performance(
    precision: dict[str, Any],
    cache: CatalogueCache,
    prepared: Prepared,
    before: CatalogueRanking,
    after: CatalogueRanking,
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


def host_peaks_for(cache_dir: Path | None, device: str) -> dict[str, Any]:
    """The host's matmul peak per precision (GFLOP/s), cached beside the embedding cache
    (`cache_dir` is the embedding cache's directory)."""
    from embtune.training.gemm_probe import host_peaks
    from embtune.training.precision import cpu_has_native_bf16, cuda_has_bf16

    cuda = device == "cuda"
    return host_peaks(
        cache_dir.parent if cache_dir is not None else None,
        device,
        native_bf16=cuda_has_bf16() if cuda else cpu_has_native_bf16(),
        cuda_fp16=cuda,
    )


def _utilization(
    peaks: Mapping[str, Any],
    work: Mapping[str, PassCount],
    seconds: Mapping[str, float],
    precision: Precision,
) -> dict[str, Any]:
    """Each model phase's achieved FLOP rate against the host's peak in the phase's precision."""
    from embtune.training.flops import FORMULA, utilization

    ran_in = {"evaluate_source": precision.encode, "train": precision.train,
              "evaluate_tuned": precision.encode}
    return {
        "formula": FORMULA,
        "peak_gflops": {k: peaks.get(k) for k in ("fp32", "bf16", "fp16") if peaks.get(k)},
        "peak_probe": {k: peaks.get(k) for k in ("device", "threads", "cpu", "measured_at",
                                                 "cached")},
        "phases": {
            name: utilization(count, seconds.get(name, 0.0), peaks.get(ran_in[name]),
                              ran_in[name])
            for name, count in work.items()
        },
    }


def _throughput(
    work: Workload,
    params: SentenceTransformerParams,
    precision: dict[str, Any],
    model_params: int,
    before: CatalogueRanking,
    expected: PhaseSeconds,
    seconds: Mapping[str, float],
) -> dict[str, Any]:
    """What this run measured, for the host's history (the worker records `samples`), next to
    what it had been estimated to take."""
    return {
        "model_params": model_params,
        "workload_tokens": {
            "catalogue": work.catalogue_tokens,
            "queries": work.query_tokens,
            "train": work.train_tokens,
        },
        "estimated": expected.to_dict() | {"total_s": round(expected.total, 1)},
        "samples": run_samples(
            work=work,
            encoded_catalogue=before.corpus_cache != "hit",
            seconds=seconds,
            model_params=model_params,
            params=params,
            precision=precision,
        ),
    }


def _metrics(
    method: str,
    params: SentenceTransformerParams,
    prepared: Prepared,
    judgement: dict[str, Any],
    outcome: TrainOutcome,
    performance: dict[str, Any],
) -> dict[str, Any]:
    return {
        **judgement,
        "data": {
            "sessions": prepared.sessions,
            "train_sessions": prepared.train_sessions,
            "validation_sessions": prepared.validation_sessions,
            "validation_queries": len(prepared.queries),  # evaluated click sessions
            "validation_queries_total": prepared.validation_queries_total,  # before sampling
            "shown_list_sessions": len(prepared.shown_sessions),
            "judged_queries": len(prepared.judged.queries) if prepared.judged else 0,
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
            # the step an interrupted run's checkpoint let this one start from (None: step 0)
            "resumed_from_step": outcome.resumed_from_step,
            "checkpoints_saved": outcome.checkpoints_saved,
        },
        "performance": performance,
        "method": method,
        "params": params.model_dump(),
    }
