"""Estimates from measured throughput: the work counted in estimated tokens, the phases it
predicts, the samples a run reports, a model's size read without loading it, and the ETA."""

from __future__ import annotations

from pathlib import Path

import pytest
from sentence_transformers import SentenceTransformer

from embtune.artifacts import resolve_source
from embtune.domain.throughput import MeasuredRates, SampleKind
from embtune.training.params import SentenceTransformerParams
from embtune.training.phases import PhaseProgress
from embtune.training.throughput import (
    MIN_SAMPLE_S,
    Workload,
    estimated_tokens,
    measured_phases,
    model_params_of,
    rows_tokens,
    run_samples,
    sample_from_dict,
)

PARAMS = SentenceTransformerParams(max_seq_length=64, train_max_seq_length=32, epochs=2)


def test_tokens_are_estimated_from_characters_and_capped_at_the_length() -> None:
    assert estimated_tokens("", 64) == 2  # [CLS] and [SEP]
    assert estimated_tokens("abcd", 64) == 3
    assert estimated_tokens("abcde", 64) == 4
    assert estimated_tokens("x" * 1000, 64) == 64
    rows = [{"anchor": "abcd", "positive": "x" * 400, "negative": "abcdefgh"}, {"q": 3}]
    assert rows_tokens(rows, 32) == 3 + 32 + 4  # numbers are not texts


def test_workload_counts_catalogue_queries_and_every_epoch_of_training() -> None:
    catalogue = {"a": "x" * 40, "b": "x" * 1000}
    rows = [{"anchor": "abcd", "positive": "x" * 1000}]
    work = Workload.of(catalogue, ["abcd", "abcdabcd"], rows, PARAMS)
    assert work.catalogue_tokens == 12 + 64
    assert work.query_tokens == 3 + 4
    assert work.train_tokens == 2 * (3 + 32)


def _rates(**overrides: float | None) -> MeasuredRates:
    values = {"encode_tokens_per_s": 100.0, "train_tokens_per_s": 10.0, "fixed_s": 4.0}
    values.update(overrides)
    return MeasuredRates(host="h", model_params=1, requested_precision="auto", **values)


def test_measured_phases_divide_the_work_by_the_rates() -> None:
    work = Workload(catalogue_tokens=900, query_tokens=100, train_tokens=50)
    phases = measured_phases(work, _rates(), source_cached=False)
    assert phases is not None and phases.basis == "measured"
    assert (phases.evaluate_source, phases.train, phases.evaluate_tuned) == (10.0, 5.0, 10.0)
    assert phases.total == 4.0 + 10.0 + 5.0 + 10.0
    cached = measured_phases(work, _rates(), source_cached=True)
    assert cached is not None and cached.evaluate_source == 1.0  # only the queries are encoded
    assert measured_phases(work, None, source_cached=False) is None
    assert measured_phases(work, _rates(train_tokens_per_s=None), source_cached=False) is None


def test_run_samples_skip_a_cache_hit_and_round_trip() -> None:
    work = Workload(catalogue_tokens=900, query_tokens=100, train_tokens=50)
    precision = {"device": "cpu", "encode": "bf16", "train": "bf16"}
    seconds = {"load": 2.0, "examples": 0.5, "evaluate_source": 3.0, "train": 5.0,
               "evaluate_tuned": 4.0, "save": 1.0}
    samples = run_samples(work=work, encoded_catalogue=True, seconds=seconds, model_params=7,
                          params=PARAMS, precision=precision)
    kinds = [s["kind"] for s in samples]
    assert kinds == ["encode", "encode", "train", "fixed"]
    read = [sample_from_dict(s) for s in samples]
    assert [s.rate for s in read] == [1000 / 4.0, 1000 / 3.0, 50 / 5.0, 1 / 3.5]
    assert read[2].seq_length == 32 and read[0].seq_length == 64
    assert read[2].batch_size == PARAMS.batch_size and read[0].batch_size == PARAMS.eval_batch_size
    hit = run_samples(work=work, encoded_catalogue=False, seconds=seconds, model_params=7,
                      params=PARAMS, precision=precision)
    assert [s["kind"] for s in hit] == ["encode", "train", "fixed"]
    assert read[3].kind is SampleKind.fixed and read[3].seconds == 3.5
    # a phase shorter than MIN_SAMPLE_S is overhead, not a rate; one just over it is a sample
    short = {**seconds, "evaluate_source": MIN_SAMPLE_S / 2, "evaluate_tuned": MIN_SAMPLE_S * 4}
    kept = run_samples(work=work, encoded_catalogue=True, seconds=short, model_params=7,
                       params=PARAMS, precision=precision)
    assert [s["kind"] for s in kept] == ["encode", "train", "fixed"]
    assert kept[0]["seconds"] == round(MIN_SAMPLE_S * 4, 3)


def test_model_size_is_read_from_safetensors_headers() -> None:
    source = resolve_source("builtin:all-MiniLM-L6-v2")
    model = SentenceTransformer(str(source), device="cpu")
    assert model_params_of(source) == sum(p.numel() for p in model.parameters())


def test_model_size_is_unknown_without_safetensors(tmp_path: Path) -> None:
    assert model_params_of(tmp_path) is None
    (tmp_path / "model.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}")
    assert model_params_of(tmp_path) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_eta_adds_the_later_phases_to_what_is_left_of_this_one() -> None:
    reports: list[dict] = []
    clock = FakeClock()
    phases = PhaseProgress(
        lambda step, total, message, **extra: reports.append({"message": message, **extra}),
        {"a": 10.0, "b": 20.0, "c": 5.0},
        clock,
    )
    phases.report("a")
    assert reports[-1]["eta_s"] == 35.0  # nothing done yet: the estimates
    clock.now = 4.0
    phases.report("a", 0.01)  # too little done to trust the pace: estimate less time spent
    assert reports[-1]["eta_s"] == 6.0 + 25.0
    clock.now = 10.0
    phases.report("a", 0.5)  # half done in 10 s: 10 s more at this pace
    assert reports[-1]["eta_s"] == 10.0 + 25.0
    phases.revise("c", 50.0)
    phases.report("b", 0.2, phase_left_s=3.0)  # the caller's own figure wins
    assert reports[-1]["eta_s"] == 53.0
    phases.report("c", 1.0)
    assert reports[-1]["eta_s"] == 0.0


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_the_bar_does_not_move_when_an_estimate_is_revised(fraction: float) -> None:
    steps: list[int] = []
    phases = PhaseProgress(lambda step, total, message, **_: steps.append(step),
                           {"a": 10.0, "b": 30.0})
    phases.report("b", fraction)
    phases.revise("a", 1000.0)
    phases.report("b", fraction)
    assert steps[0] == steps[1]
