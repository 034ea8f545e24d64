"""What a search's result keeps of its best trial's report."""

from __future__ import annotations

from embtune.services.search_run import without_throughput_samples


def test_a_trials_result_records_no_throughput_samples_and_keeps_the_rest() -> None:
    metrics = {
        "verdict": {"verdict": "better"},
        "performance": {"phases_s": {"train": 3.0},
                        "throughput": {"samples": [{"kind": "train"}], "model_params": 22}},
    }
    kept = without_throughput_samples(metrics)
    assert kept["performance"] == {"phases_s": {"train": 3.0},
                                   "throughput": {"model_params": 22}}
    assert kept["verdict"] == metrics["verdict"]
    assert metrics["performance"]["throughput"]["samples"]  # the input is not changed
    assert without_throughput_samples({"judged": {}}) == {"judged": {}}
