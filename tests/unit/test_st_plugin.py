"""The built-in sentence-transformers plugins, run end to end on a tiny shop through a RunContext.

The shop's clicks contradict the base model (see `tests.support.training_data`), so a working
run must turn a near-zero validation nDCG into a high one; a broken one (no training, training
on the wrong side of the split, evaluating the wrong model) cannot.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from embtune import allocator
from embtune.clickstream.sessions import SearchSession
from embtune.clickstream.split import query_relevance, split_by_query
from embtune.errors import TaskRefused, TaskStopped
from embtune.plugins.base import FineTuningPlugin, RunContext, RunResult, SourceModel
from embtune.plugins.registry import DEFAULT_PLUGIN, PluginRegistry
from embtune.plugins.sentence_transformers import ClickMarginPlugin, ClickstreamMNRLPlugin
from embtune.training.phases import PROGRESS_UNITS
from embtune.training.preflight import ENCODE_DOCUMENTS_PER_S, TRAIN_EXAMPLES_PER_S, preflight
from embtune.training.run import SAVE_WEIGHT_S
from tests.support.training_data import InMemoryTrainingData, shop_jargon_data

SOURCE = SourceModel(id="m-base", name="mini", source="builtin:all-MiniLM-L6-v2")
SHOP_PARAMS = {
    "epochs": 3,
    "batch_size": 16,
    "learning_rate": 2e-4,
    "max_seq_length": 32,
    "validation_fraction": 0.25,
    "seed": 0,
}
# One short epoch, for tests that need a real run but not the full improvement.
QUICK_PARAMS = {**SHOP_PARAMS, "epochs": 1, "batch_size": 8, "learning_rate": 5e-4}
PHASES = [
    "building examples",
    "loading model",
    "evaluating source model",
    "training",
    "evaluating tuned model",
    "saving",
]


@dataclass
class Run:
    result: RunResult
    reports: list[dict[str, Any]]
    output_dir: Path
    data: InMemoryTrainingData
    cache_dir: Path


def run_plugin(
    plugin: FineTuningPlugin,
    data: InMemoryTrainingData | None,
    output_dir: Path,
    params: dict[str, Any],
    source: SourceModel = SOURCE,
    should_stop: Any = None,
    reports: list[dict[str, Any]] | None = None,
    cache_dir: Path | None = None,
) -> RunResult:
    reports = [] if reports is None else reports
    output_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(
        task_id="t-1",
        model=source,
        params=plugin.validate_params(params),
        output_dir=output_dir,
        data=data,
        report=lambda **report: reports.append(report),
        should_stop=should_stop or (lambda: False),
        cache_dir=cache_dir,
    )
    return plugin.run(ctx)


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One MNRL run on the shop, shared by the tests that only inspect its outcome."""
    data = shop_jargon_data()
    output_dir = tmp_path_factory.mktemp("shop") / "model"
    cache_dir = tmp_path_factory.mktemp("cache")
    reports: list[dict[str, Any]] = []
    result = run_plugin(
        ClickstreamMNRLPlugin(), data, output_dir, SHOP_PARAMS, reports=reports,
        cache_dir=cache_dir,
    )
    return Run(result, reports, output_dir, data, cache_dir)


def without_timings(metrics: dict[str, Any]) -> dict[str, Any]:
    training = {
        k: v for k, v in metrics["training"].items() if k not in {"runtime_s", "examples_per_s"}
    }
    timed = {"phases_s", "total_s", "peak_rss_mb", "encode_items_per_s"}
    performance = {k: v for k, v in metrics["performance"].items() if k not in timed}
    performance["cache"] = {k: v for k, v in performance["cache"].items() if k != "key_s"}
    # what the run measured varies; the work it counted does not
    performance["throughput"] = {k: performance["throughput"][k]
                                 for k in ("model_params", "workload_tokens")}
    performance["utilization"] = {
        name: {k: phase[k] for k in ("tokens", "gflop", "precision")}
        for name, phase in performance["utilization"]["phases"].items()
    }
    return {**metrics, "training": training, "performance": performance}


# -- a real run ---------------------------------------------------------------------------------
def test_tuning_on_clicks_improves_validation_ndcg(shop_run: Run) -> None:
    metrics = shop_run.result.metrics
    before, after = metrics["before"]["ndcg@10"], metrics["after"]["ndcg@10"]
    assert before < 0.3, f"the shop no longer contradicts the base model (ndcg@10 {before:.3f})"
    assert after > before + 0.4, f"ndcg@10 {before:.3f} -> {after:.3f}"
    assert metrics["delta"]["ndcg@10"] == pytest.approx(after - before)


def test_metrics_describe_the_run(shop_run: Run) -> None:
    metrics = shop_run.result.metrics
    assert set(metrics) == {
        "before",
        "after",
        "delta",
        "per_query",
        "verdict",
        "clicks",
        "data",
        "training",
        "performance",
        "method",
        "params",
    }
    names = {"ndcg@10", "mrr@10", "recall@10", "recall@100"}
    assert set(metrics["before"]) == set(metrics["after"]) == set(metrics["delta"]) == names
    assert metrics["method"] == "sentence-transformers-mnrl"
    assert metrics["params"] == ClickstreamMNRLPlugin().validate_params(SHOP_PARAMS).model_dump()
    data = metrics["data"]
    assert data["sessions"] == len(shop_run.data.search_sessions) == data["clicks"]
    assert data["train_sessions"] + data["validation_sessions"] == data["sessions"]
    assert data["items"] == len(shop_run.data.items)
    training = metrics["training"]
    assert training["steps"] > 0 and training["runtime_s"] > 0 and training["examples_per_s"] > 0
    assert training["precision"] == metrics["performance"]["precision"]["train"]


def test_performance_reports_precision_phases_cache_and_queries(shop_run: Run) -> None:
    performance = shop_run.result.metrics["performance"]
    assert performance["precision"]["requested"] == "auto"
    assert performance["precision"]["encode"] in {"fp32", "bf16"}  # CPU: fp16 only if asked
    assert performance["allocator"] == allocator.mode()
    phases = performance["phases_s"]
    order = ["load", "examples", "evaluate_source", "train", "evaluate_tuned", "save"]
    assert list(phases) == order
    assert all(seconds >= 0 for seconds in phases.values())
    assert performance["total_s"] == pytest.approx(sum(phases.values()), abs=0.01)
    assert set(performance["peak_rss_mb"]) == set(phases)
    # A fresh cache: the source model is encoded and stored, so is the tuned model.
    assert performance["cache"] == {
        "enabled": True,
        "source_hit": False,
        "source": "stored",
        "tuned": "stored",
        "key_s": performance["cache"]["key_s"],
    }
    data = shop_run.result.metrics["data"]
    assert performance["eval_queries"] == data["validation_queries"]
    assert data["validation_queries"] == data["validation_queries_total"]  # fewer than the bound


def test_retune_reads_its_source_vectors_from_the_cache(shop_run: Run, tmp_path: Path) -> None:
    """The tuned model's catalogue vectors, stored by the first task, are the second task's
    "before": nothing to encode but the queries, and the same figures as the first "after"."""
    tuned = SourceModel(id="m-tuned", name="mini tuned", source=str(shop_run.output_dir))
    params = {**QUICK_PARAMS, "max_seq_length": SHOP_PARAMS["max_seq_length"]}
    result = run_plugin(
        ClickstreamMNRLPlugin(), shop_run.data, tmp_path / "retune", params, source=tuned,
        cache_dir=shop_run.cache_dir,
    )
    performance = result.metrics["performance"]
    assert performance["cache"]["source_hit"] and performance["cache"]["source"] == "hit"
    first_after = shop_run.result.metrics["after"]
    assert result.metrics["before"] == pytest.approx(first_after, abs=1e-6)


def test_eval_max_queries_bounds_and_reports_the_evaluated_queries(tmp_path: Path) -> None:
    data = shop_jargon_data(sessions_per_product=2)
    result = run_plugin(
        ClickstreamMNRLPlugin(), data, tmp_path, {**QUICK_PARAMS, "eval_max_queries": 3}
    )
    metrics = result.metrics
    assert metrics["performance"]["eval_queries"] == metrics["data"]["validation_queries"] == 3
    assert metrics["data"]["validation_queries_total"] > 3
    per_query = metrics["per_query"]
    assert per_query["better"] + per_query["worse"] + per_query["same"] == 3
    assert "3 of " in (tmp_path / "README.md").read_text()


def test_per_query_counts_add_up_to_the_validation_queries(shop_run: Run) -> None:
    per_query = shop_run.result.metrics["per_query"]
    _, validation = split_by_query(
        shop_run.data.search_sessions, SHOP_PARAMS["validation_fraction"], SHOP_PARAMS["seed"]
    )
    queries, _ = query_relevance(validation)
    assert per_query["better"] + per_query["worse"] + per_query["same"] == len(queries)
    assert len(per_query["worst_regressions"]) == min(per_query["worse"], 10)


def test_tuned_model_is_saved_in_output_dir_and_loads(shop_run: Run) -> None:
    from embtune.training.evaluation import evaluate_retrieval
    from embtune.training.models import load_model

    assert shop_run.result.model_dir == shop_run.output_dir
    model = load_model(str(shop_run.output_dir), max_seq_length=32, device="cpu")
    _, validation = split_by_query(
        shop_run.data.search_sessions, SHOP_PARAMS["validation_fraction"], SHOP_PARAMS["seed"]
    )
    queries, relevant = query_relevance(validation)
    reloaded = evaluate_retrieval(model, queries, shop_run.data.items, relevant)
    # The saved weights are the ones that were evaluated as "after".
    assert reloaded.metrics["ndcg@10"] == pytest.approx(
        shop_run.result.metrics["after"]["ndcg@10"], abs=1e-4
    )


def test_model_card_names_the_method_and_holds_no_queries(shop_run: Run) -> None:
    card = (shop_run.output_dir / "README.md").read_text()
    assert "sentence-transformers-mnrl" in card and SOURCE.name in card
    leaked = {s.query for s in shop_run.data.search_sessions if s.query in card}
    assert not leaked


def test_progress_goes_through_the_phases_to_the_end(shop_run: Run) -> None:
    reports = shop_run.reports
    messages = list(dict.fromkeys(r["message"] for r in reports))
    assert messages == PHASES
    steps = [r["step"] for r in reports]
    assert steps == sorted(steps) and steps[-1] == PROGRESS_UNITS
    assert all(r["total_steps"] == PROGRESS_UNITS for r in reports)
    training = [r for r in reports if r.get("train_total_steps")]
    assert training, "the trainer's steps were not forwarded"
    assert training[-1]["train_step"] == training[-1]["train_total_steps"]
    assert shop_run.result.metrics["training"]["steps"] == training[-1]["train_total_steps"]
    assert {"epoch", "loss", "eta_s"} <= set(training[-1])
    # eta_s runs to the end of the run: at the last step, what evaluating the tuned model will
    # take, i.e. as long as the source model's evaluation took (its catalogue was not cached),
    # plus saving (a constant: this run had no measured history).
    phases_s = shop_run.result.metrics["performance"]["phases_s"]
    expected = phases_s["evaluate_source"] + SAVE_WEIGHT_S
    assert training[-1]["eta_s"] == pytest.approx(expected, abs=0.051)
    assert all(r["eta_s"] >= training[-1]["eta_s"] for r in training if r["train_step"])
    # Training dominates the run, so it gets most of the bar.
    first_training = next(r["step"] for r in reports if r["message"] == "training")
    assert training[-1]["step"] - first_training > PROGRESS_UNITS / 3


def test_same_seed_gives_same_metrics(tmp_path: Path) -> None:
    data = shop_jargon_data(sessions_per_product=2)
    runs = [
        run_plugin(ClickstreamMNRLPlugin(), data, tmp_path / name, QUICK_PARAMS).metrics
        for name in ("a", "b")
    ]
    assert without_timings(runs[0]) == without_timings(runs[1])
    assert runs[0]["after"] != runs[0]["before"], "the runs did not train"


def test_click_margin_plugin_improves_validation_ndcg(tmp_path: Path) -> None:
    data = shop_jargon_data(sessions_per_product=2)
    result = run_plugin(ClickMarginPlugin(), data, tmp_path, QUICK_PARAMS)
    metrics = result.metrics
    assert metrics["method"] == "click-margin"
    assert metrics["after"]["ndcg@10"] > metrics["before"]["ndcg@10"]
    assert (tmp_path / "model.safetensors").is_file()


def test_should_stop_stops_training_within_one_step(tmp_path: Path) -> None:
    reports: list[dict[str, Any]] = []

    def stop_once_training_stepped() -> bool:
        return any(r.get("train_step", 0) >= 1 for r in reports)

    started = time.monotonic()
    with pytest.raises(TaskStopped):
        run_plugin(
            ClickstreamMNRLPlugin(),
            shop_jargon_data(),
            tmp_path,
            {**SHOP_PARAMS, "epochs": 20},
            should_stop=stop_once_training_stepped,
            reports=reports,
        )
    assert max(r.get("train_step", 0) for r in reports) == 1
    assert not (tmp_path / "model.safetensors").exists()
    assert time.monotonic() - started < 60  # 20 epochs would take minutes


@pytest.mark.parametrize(("phase", "checks_before_the_pass"), [
    ("evaluating source model", 1),  # the phase's own progress report checks once
    ("training", 2),  # the phase report, then the trainer's check before the first step
])
def test_a_cancel_stops_the_run_inside_a_forward_pass(
    tmp_path: Path, phase: str, checks_before_the_pass: int
) -> None:
    """The flag goes up at the first check inside the phase's first forward pass, which only
    the model's own stop checks make: the run unwinds from there, the pass unfinished."""
    reports: list[dict[str, Any]] = []
    checks_in_phase: list[int] = []

    def should_stop() -> bool:
        if any(r.get("message") == phase for r in reports):
            checks_in_phase.append(1)
        return len(checks_in_phase) > checks_before_the_pass

    with pytest.raises(TaskStopped) as stopped:
        run_plugin(ClickstreamMNRLPlugin(), shop_jargon_data(), tmp_path, QUICK_PARAMS,
                   should_stop=should_stop, reports=reports)
    assert any(entry.path.name == "stop_checks.py" for entry in stopped.traceback)
    assert any(entry.name == "_call_impl" for entry in stopped.traceback)  # a module call
    in_phase = [r for r in reports if r.get("message") == phase]
    assert len(in_phase) == 1, in_phase  # nothing of the phase was finished and reported
    assert not (tmp_path / "model.safetensors").exists()


# -- refusals -----------------------------------------------------------------------------------
# Five sessions with hand-countable outcomes: 3 clicks, one on an item with no text (x), one
# session without clicks, one irrelevant. As MNRL examples, s1 and s2 give one each (a click
# below one skipped item); the others none.
TINY_SESSIONS = [
    SearchSession("s1", "alpha", ("a", "b"), ("b",)),
    SearchSession("s2", "beta", ("c", "d"), ("d",)),
    SearchSession("s3", "gamma", ("e", "x"), ("x",)),
    SearchSession("s4", "delta", ("a", "c"), ()),
    SearchSession("s5", "epsilon", ("b",), (), irrelevant=True),
]
TINY_ITEMS = {name: f"item {name}" for name in "abcde"}
TINY_MNRL_EXAMPLES = {"s1": 1, "s2": 1, "s3": 0, "s4": 0, "s5": 0}
TINY_PARAMS = {"validation_fraction": 0.5, "seed": 3, "max_seq_length": 64}


def tiny_data() -> InMemoryTrainingData:
    return InMemoryTrainingData(list(TINY_SESSIONS), dict(TINY_ITEMS))


def tiny_split() -> tuple[list[SearchSession], list[SearchSession]]:
    return split_by_query(TINY_SESSIONS, TINY_PARAMS["validation_fraction"], TINY_PARAMS["seed"])


def test_too_few_examples_are_refused_with_the_figures(tmp_path: Path) -> None:
    train, validation = tiny_split()
    examples = sum(TINY_MNRL_EXAMPLES[s.session_id] for s in train)
    # An unloadable source proves the refusal comes before the model is loaded.
    unloadable = SourceModel(id="m-x", name="x", source="builtin:no-such-model")
    with pytest.raises(TaskRefused) as refused:
        run_plugin(ClickstreamMNRLPlugin(), tiny_data(), tmp_path, TINY_PARAMS, unloadable)
    detail = refused.value.detail
    for figure in (
        "5 sessions",
        "3 clicks",
        f"{examples} training examples",
        f"{len(validation)} validation sessions",
        "1 clicked items with no text",
        "at least 8",
    ):
        assert figure in detail, f"{figure!r} missing from {detail!r}"


def test_missing_data_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TaskRefused, match="no training data"):
        run_plugin(ClickstreamMNRLPlugin(), None, tmp_path, {})
    with pytest.raises(TaskRefused, match="no search sessions"):
        run_plugin(ClickstreamMNRLPlugin(), InMemoryTrainingData([], {"a": "x"}), tmp_path, {})


def test_unloadable_source_model_is_refused(tmp_path: Path) -> None:
    unloadable = SourceModel(id="m-x", name="x", source=str(tmp_path / "gone"))
    with pytest.raises(TaskRefused, match="cannot be loaded"):
        run_plugin(
            ClickstreamMNRLPlugin(), shop_jargon_data(), tmp_path / "out", SHOP_PARAMS, unloadable
        )


# -- preflight ----------------------------------------------------------------------------------
def test_preflight_figures_match_hand_counts() -> None:
    train, validation = tiny_split()
    assert train and validation, "pick a seed that puts sessions on both sides"
    examples = sum(TINY_MNRL_EXAMPLES[s.session_id] for s in train)
    params = ClickstreamMNRLPlugin().validate_params({**TINY_PARAMS, "min_examples": 1})
    report = preflight(tiny_data(), params, "mnrl")
    seconds = (2 * 5 / ENCODE_DOCUMENTS_PER_S + 3 * examples / TRAIN_EXAMPLES_PER_S) * 64 / 256
    encode = 5 / ENCODE_DOCUMENTS_PER_S * 64 / 256
    assert report["estimate"] == {
        "basis": "constants",  # nothing measured: no history given
        "fixed_s": 0.0,
        "evaluate_source_s": round(encode, 1),
        "train_s": round(3 * examples / TRAIN_EXAMPLES_PER_S * 64 / 256, 1),
        "evaluate_tuned_s": round(encode, 1),
        "source_vectors_cached": False,
    }
    assert report == {
        "sessions": 5,
        "clicks": 3,
        "examples": examples,
        "validation_sessions": len(validation),
        "clicked_items_without_text": 1,
        "items": 5,
        "estimated_seconds": round(seconds, 1),
        "estimate": report["estimate"],
        "would_refuse": report["would_refuse"],
        "reason": report["reason"],
    }
    assert ClickstreamMNRLPlugin().preflight(params, tiny_data()) == report
    assert ClickstreamMNRLPlugin().preflight(params, None)["would_refuse"]


def test_preflight_gives_the_reason_run_refuses_with(tmp_path: Path) -> None:
    plugin = ClickstreamMNRLPlugin()
    report = preflight(tiny_data(), plugin.validate_params(TINY_PARAMS), "mnrl")
    assert report["would_refuse"]
    with pytest.raises(TaskRefused) as refused:
        run_plugin(plugin, tiny_data(), tmp_path, TINY_PARAMS)
    assert refused.value.detail == report["reason"]


def test_preflight_accepts_the_shop() -> None:
    params = ClickstreamMNRLPlugin().validate_params(SHOP_PARAMS)
    report = preflight(shop_jargon_data(), params, "mnrl")
    assert not report["would_refuse"] and report["reason"] is None


# -- registration and import cost ---------------------------------------------------------------
def test_both_methods_are_registered_and_mnrl_is_the_default() -> None:
    registry = PluginRegistry.discover()
    assert isinstance(registry.get_trainable(DEFAULT_PLUGIN), ClickstreamMNRLPlugin)
    assert isinstance(registry.get_trainable("click-margin"), ClickMarginPlugin)


def test_plugin_module_and_preflight_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import embtune.plugins.sentence_transformers as st\n"
        "from tests.support.training_data import shop_jargon_data\n"
        "plugin = st.ClickstreamMNRLPlugin()\n"
        "plugin.preflight(plugin.validate_params({}), shop_jargon_data())\n"
        "heavy = {'torch', 'sentence_transformers', 'datasets', 'transformers'}\n"
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[2]
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
