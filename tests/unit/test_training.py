"""A tiny real fine-tune of the built-in model: progress, cancellation, determinism, evaluation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from sentence_transformers import SentenceTransformer
from transformers import TrainerControl, TrainerState

from embtune.artifacts import resolve_source
from embtune.clickstream.sessions import SearchSession, build_examples, build_pairs
from embtune.clickstream.split import query_relevance
from embtune.errors import TaskRefused, TaskStopped
from embtune.training.evaluation import evaluate_retrieval
from embtune.training.ir_metrics import RetrievalReport, compare_reports
from embtune.training.models import load_model
from embtune.training.precision import resolve_precision
from embtune.training.stop_checks import stop_checks
from embtune.training.trainer import (
    LossKind,
    ProgressCallback,
    TrainParams,
    fine_tune,
    margin_rows,
    mnrl_rows,
)

ITEMS = {
    f"i{index:02d}": text
    for index, text in enumerate(
        [
            "red running shoes with foam soles",
            "blue denim jacket",
            "wireless noise cancelling headphones",
            "burr coffee grinder",
            "non-slip yoga mat",
            "stainless steel electric kettle",
            "slim leather wallet",
            "mechanical keyboard with brown switches",
            "adjustable led desk lamp",
            "40 litre hiking backpack",
            "cast iron frying pan",
            "waterproof rain jacket",
            "trail running shoes",
            "bluetooth speaker",
            "espresso machine",
            "foam roller for muscles",
            "insulated water bottle",
            "ergonomic office chair",
            "wool winter socks",
            "camping tent for two",
        ]
    )
}

SESSIONS = [
    SearchSession("s01", "running shoes", ("i01", "i12", "i00"), ("i00",)),
    SearchSession("s02", "jacket for rain", ("i01", "i11"), ("i11",)),
    SearchSession("s03", "headphones", ("i13", "i02"), ("i02",)),
    SearchSession("s04", "coffee", ("i14", "i03"), ("i03", "i14")),
    SearchSession("s05", "exercise mat", ("i15", "i04"), ("i04",)),
    SearchSession("s06", "kettle", ("i05",), ("i05",)),
    SearchSession("s07", "wallet", ("i08", "i06"), ("i06",)),
    SearchSession("s08", "keyboard", ("i17", "i07"), ("i07",)),
    SearchSession("s09", "desk light", ("i09", "i08"), ("i08",)),
    SearchSession("s10", "backpack", ("i19", "i09"), ("i09",)),
    SearchSession("s11", "pan", ("i10",), ("i10",)),
    SearchSession("s12", "socks", ("i18",), ("i18",)),
    SearchSession("s13", "gift ideas", ("i06", "i18", "i16"), (), irrelevant=True),
]

FAST = {"epochs": 1, "batch_size": 4, "max_seq_length": 32, "min_examples": 1, "seed": 7}


@pytest.fixture(scope="session")
def base_model() -> SentenceTransformer:
    return load_model("builtin:all-MiniLM-L6-v2", max_seq_length=32, device="cpu")


@pytest.fixture
def model(base_model: SentenceTransformer) -> SentenceTransformer:
    """A private copy: fine-tuning trains in place, and tests must not see each other's training."""
    return copy.deepcopy(base_model)


def mnrl_training_rows() -> list[dict[str, Any]]:
    return mnrl_rows(build_examples(SESSIONS), ITEMS)


def never() -> bool:
    return False


def test_progress_reports_step_and_total(model: SentenceTransformer, tmp_path: Path) -> None:
    reports: list[dict[str, Any]] = []
    outcome = fine_tune(
        model, mnrl_training_rows(), "mnrl", TrainParams(**FAST), tmp_path, reports.append, never
    )
    assert reports, "no progress was reported"
    assert all(r["total_steps"] == outcome.steps for r in reports)
    assert [r["step"] for r in reports] == sorted(r["step"] for r in reports)
    last = reports[-1]
    assert last["step"] == outcome.steps and last["fraction"] == 1.0
    assert set(last) == {"step", "total_steps", "epoch", "loss", "eta_s", "fraction"}
    assert (tmp_path / "model.safetensors").is_file()
    # `auto` trains in bf16 where the hardware computes it natively, else in fp32.
    assert outcome.precision == resolve_precision("auto", model.device.type).train
    # writing the weights is timed apart from training (no comparison of the two: on a fast
    # CPU five tiny steps take about as long as one save)
    assert outcome.save_s > 0 and outcome.runtime_s > 0


@pytest.mark.slow
def test_bf16_training_on_cpu_runs_mixed_precision_with_fp32_weights(
    model: SentenceTransformer, tmp_path: Path
) -> None:
    params = TrainParams(**{**FAST, "precision": "bf16"})
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    seen: list[tuple[torch.dtype, bool]] = []
    hook = linear.register_forward_hook(
        lambda _module, _inputs, output: seen.append((output.dtype, torch.is_grad_enabled()))
    )
    try:
        outcome = fine_tune(
            model, mnrl_training_rows()[:8], "mnrl", params, tmp_path, lambda _: None, never
        )
    finally:
        hook.remove()
    assert outcome.precision == "bf16" and outcome.steps > 0
    # the training passes ran under autocast (bf16 activations) on fp32 master weights
    training_passes = [dtype for dtype, grad in seen if grad]
    assert training_passes and set(training_passes) == {torch.bfloat16}
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())


def test_saved_model_card_holds_no_training_queries(
    model: SentenceTransformer, tmp_path: Path
) -> None:
    fine_tune(
        model, mnrl_training_rows(), "mnrl", TrainParams(**FAST), tmp_path, lambda _: None, never
    )
    card = (tmp_path / "README.md").read_text() if (tmp_path / "README.md").exists() else ""
    source_card = (resolve_source("builtin:all-MiniLM-L6-v2") / "README.md").read_text()
    # Short queries ("pan") occur in any long text; what counts is text the source card lacked.
    leaked = [s.query for s in SESSIONS if s.query in card and s.query not in source_card]
    assert not leaked, f"search queries in the model card: {leaked}"


def test_should_stop_raises_task_stopped_within_one_step(
    model: SentenceTransformer, tmp_path: Path
) -> None:
    checks: list[bool] = []

    def stop_after_first_step() -> bool:
        checks.append(True)
        return len(checks) >= 2  # the first check is before any step

    with pytest.raises(TaskStopped):
        fine_tune(
            model,
            mnrl_training_rows(),
            "mnrl",
            TrainParams(**FAST),
            tmp_path,
            lambda _: None,
            stop_after_first_step,
        )
    assert len(checks) == 2
    assert not (tmp_path / "model.safetensors").exists()


def test_a_cancel_inside_a_training_step_stops_it_before_the_step_ends(
    model: SentenceTransformer, tmp_path: Path
) -> None:
    """The flag is raised inside the first step's forward pass (by a hook on layer 2 of 6):
    the pass stops at the next layer, and the optimizer never steps."""
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    layers = model[0].auto_model.encoder.layer
    ran: list[int] = []
    stop = {"now": False}

    def record(index: int) -> Any:
        def hook(module: torch.nn.Module, args: Any) -> None:
            ran.append(index)
            stop["now"] = stop["now"] or (index == 2 and torch.is_grad_enabled())

        return hook

    handles = [layer.register_forward_pre_hook(record(i)) for i, layer in enumerate(layers)]
    reports: list[dict[str, Any]] = []
    try:
        with pytest.raises(TaskStopped) as stopped, stop_checks(model, lambda: stop["now"]):
            fine_tune(model, mnrl_training_rows(), "mnrl", TrainParams(**FAST), tmp_path,
                      reports.append, lambda: stop["now"])
    finally:
        for handle in handles:
            handle.remove()
    assert ran == [0, 1, 2]  # layers 3-5 of the first forward pass never ran
    assert any(entry.path.name == "stop_checks.py" for entry in stopped.traceback)
    assert reports == []  # no step ended
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())
    assert not (tmp_path / "model.safetensors").exists()


def test_eta_is_the_remaining_steps_at_the_time_per_step_so_far(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a fake clock: 2 s per step for the first 4 steps, then 4 s per step."""
    now = {"t": 100.0}
    monkeypatch.setattr("embtune.training.trainer.time.monotonic", lambda: now["t"])
    reports: list[dict[str, Any]] = []
    callback = ProgressCallback(reports.append, never, min_interval_s=0.0)
    state, control, args = TrainerState(), TrainerControl(), None
    state.max_steps = 10
    callback.on_train_begin(args, state, control)
    for step in range(1, 11):
        now["t"] += 2.0 if step <= 4 else 4.0
        state.global_step, state.epoch = step, step / 10
        callback.on_log(args, state, control, logs={"loss": 1.0 / step})
    etas = [r["eta_s"] for r in reports]
    assert etas[0] == pytest.approx(2.0 * 9)  # 9 steps left at 2 s
    assert etas[3] == pytest.approx(2.0 * 6)  # 8 s for 4 steps: 6 left
    assert etas[5] == pytest.approx(16.0 / 6 * 4)  # 8 + 2 * 4 s over 6 steps: 4 left
    assert etas == sorted(etas, reverse=True) and etas[-1] == 0.0
    callback.on_log(args, state, control, logs={"train_runtime": 30.0})  # the summary line
    assert len(reports) == 10


@pytest.mark.slow  # the plugin-level determinism test stays in the default suite
@pytest.mark.parametrize("loss_kind", ["mnrl", "click_margin"])
def test_same_seed_and_data_give_same_weights(
    base_model: SentenceTransformer, tmp_path: Path, loss_kind: LossKind
) -> None:
    if loss_kind == "mnrl":
        rows = mnrl_training_rows()
    else:
        rows = margin_rows(build_pairs(SESSIONS), ITEMS)
    trained = []
    for run in ("a", "b"):
        model = copy.deepcopy(base_model)
        fine_tune(
            model, rows, loss_kind, TrainParams(**FAST), tmp_path / run, lambda _: None, never
        )
        trained.append(model.state_dict())
    first, second = trained
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert any(not torch.equal(first[name], base_model.state_dict()[name]) for name in first), (
        "training did not change the weights"
    )


def test_too_few_examples_are_refused_before_training(
    model: SentenceTransformer, tmp_path: Path
) -> None:
    params = TrainParams(**{**FAST, "min_examples": 1000})
    with pytest.raises(TaskRefused):
        fine_tune(model, mnrl_training_rows(), "mnrl", params, tmp_path, lambda _: None, never)


def test_a_shorter_training_length_truncates_training_only(
    model: SentenceTransformer, tmp_path: Path
) -> None:
    seen: list[int] = []

    def record(_module: Any, args: tuple[Any, ...]) -> None:
        seen.append(args[0]["input_ids"].shape[1])  # the tokenized batch the encoder gets

    hook = model[0].register_forward_pre_hook(record)
    long_items = {oid: text + " with extra words" * 10 for oid, text in ITEMS.items()}
    rows = mnrl_rows(build_examples(SESSIONS), long_items)
    try:
        fine_tune(model, rows, "mnrl", TrainParams(**{**FAST, "train_max_seq_length": 16}),
                  tmp_path, lambda _: None, never)
    finally:
        hook.remove()
    assert seen and max(seen) == 16  # the long documents were cut at 16 tokens in training
    assert model.max_seq_length == FAST["max_seq_length"]  # evaluation and serving: 32
    saved = SentenceTransformer(str(tmp_path), device="cpu")
    assert saved.max_seq_length == FAST["max_seq_length"]


def test_training_length_may_not_exceed_the_model_length() -> None:
    with pytest.raises(ValidationError, match="train_max_seq_length"):
        TrainParams(max_seq_length=128, train_max_seq_length=256)
    assert TrainParams(max_seq_length=128).training_seq_length == 128
    assert TrainParams(train_max_seq_length=64).training_seq_length == 64


def test_params_reject_unknown_fields_and_out_of_range_values() -> None:
    with pytest.raises(ValidationError):
        TrainParams(epochs=0)
    with pytest.raises(ValidationError):
        TrainParams(learning_rate=1.0)
    with pytest.raises(ValidationError):
        TrainParams(unknown=1)


def test_evaluate_retrieval_returns_metrics_and_ranks(base_model: SentenceTransformer) -> None:
    queries, relevant = query_relevance(SESSIONS)
    report = evaluate_retrieval(base_model, queries, ITEMS, relevant)
    assert set(report.metrics) == {"ndcg@10", "mrr@10", "recall@10", "recall@100"}
    assert all(0.0 <= value <= 1.0 for value in report.metrics.values())
    assert report.metrics["recall@100"] == 1.0  # the corpus is smaller than 100
    assert report.ranks.keys() == queries.keys()
    assert all(rank is not None and 1 <= rank <= len(ITEMS) for rank in report.ranks.values())
    mrr = sum(1 / rank for rank in report.ranks.values() if rank <= 10) / len(report.ranks)
    assert report.metrics["mrr@10"] == pytest.approx(mrr)


def test_compare_reports_counts_and_orders_regressions() -> None:
    metrics = dict.fromkeys(("ndcg@10", "mrr@10", "recall@10", "recall@100"), 0.5)
    before = RetrievalReport(metrics, {"up": 5, "down": 1, "gone": 50, "same": 3, "found": None})
    after = RetrievalReport(metrics, {"up": 2, "down": 4, "gone": None, "same": 3, "found": 9})
    queries = {"up": "q up", "down": "q down", "gone": "q gone", "same": "q same"}
    comparison = compare_reports(before, after, queries, worst=10)
    assert (comparison["better"], comparison["worse"], comparison["same"]) == (2, 2, 1)
    regressions = comparison["worst_regressions"]
    assert [(r["query"], r["rank_before"], r["rank_after"]) for r in regressions] == [
        ("q down", 1, 4),
        ("q gone", 50, None),
    ]
    assert len(compare_reports(before, after, queries, worst=1)["worst_regressions"]) == 1


def test_load_model_rejects_unknown_sources(tmp_path: Path) -> None:
    # Sources resolve through embtune.artifacts.resolve_source, the registration-time check; each
    # of these fails before any weights are read.
    with pytest.raises(ValueError, match="built-in"):
        load_model("builtin:no-such-model", max_seq_length=32, device="cpu")
    with pytest.raises(ValueError, match="does not exist"):
        load_model(str(tmp_path / "missing"), max_seq_length=32, device="cpu")
    with pytest.raises(ValueError, match="absolute"):
        load_model("relative/model", max_seq_length=32, device="cpu")
