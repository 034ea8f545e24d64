"""Estimates from what workers measured: a real run records its throughput under its host, the
next preflight and the next run estimate from it, and every model phase reports its utilization
against the host's measured matmul peak. The history itself on every database."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from embtune.domain.throughput import SampleKind, ThroughputSample
from embtune.runtime import Runtime
from embtune.services.throughput import RECENT_PER_KIND, ThroughputHistory
from embtune.storage.db import utcnow
from embtune.storage.throughput_repo import KEEP_PER_HOST_KIND
from tests.conftest import make_settings, register_model, wait_status
from tests.integration.test_real_finetune import ingest_shop
from tests.support.backends import Backend

TASKS = "/api/v1/fine-tuning/task"
PARAMS = {"max_seq_length": 32, "batch_size": 16, "learning_rate": 2e-4, "epochs": 1, "seed": 0}


@pytest.mark.backends("sqlite-embedded")
def test_a_run_measures_and_the_next_estimates_from_it(client: TestClient) -> None:
    ingest_shop(client)
    model_id = register_model(client, plugin="sentence-transformers-mnrl")
    body = {"embedding_model_id": model_id, "params": PARAMS}
    first_look = client.post(f"{TASKS}/preflight", json=body).json()
    assert first_look["estimate"]["basis"] == "constants"  # a new host has no history

    task = client.post(TASKS, json=body).json()
    done = wait_status(client, task["id"], "done", timeout=240)
    performance = done["metrics"]["performance"]
    samples = performance["throughput"]["samples"]
    assert {s["kind"] for s in samples} == {"encode", "train", "fixed"}
    assert all(s["seconds"] > 0 and s["units"] > 0 for s in samples)
    assert performance["throughput"]["estimated"]["basis"] == "constants"

    utilization = performance["utilization"]
    assert utilization["peak_gflops"]["fp32"] > 0
    assert set(utilization["phases"]) == {"evaluate_source", "train", "evaluate_tuned"}
    for name, phase in utilization["phases"].items():
        assert phase["gflop"] > 0 and phase["achieved_gflops"] > 0, name
        assert phase["fraction_of_peak"] is not None and phase["fraction_of_peak"] > 0, name
    train_precision = performance["precision"]["train"]
    assert utilization["phases"]["train"]["precision"] == train_precision

    runtime: Runtime = client.app.state.runtime
    host = runtime.settings.resolved_host_name
    again_body = {**body, "batch_id": done["batch_id"], "params": {**PARAMS, "seed": 1}}
    second_look = client.post(f"{TASKS}/preflight", json=again_body).json()
    estimate = second_look["estimate"]
    assert estimate["basis"] == "measured" and estimate["host"] == host
    assert estimate["samples"]["train"] == 1 and estimate["samples"]["encode"] >= 1
    # the first run cached the source model's catalogue vectors: its "before" costs a read
    assert estimate["source_vectors_cached"] is True
    assert second_look["estimated_seconds"] == pytest.approx(
        estimate["fixed_s"] + estimate["evaluate_source_s"] + estimate["train_s"]
        + estimate["evaluate_tuned_s"], abs=0.25)

    # the same kind of task again, on the same sessions (the first run released the open batch)
    again = client.post(TASKS, json=again_body).json()
    done_again = wait_status(client, again["id"], "done", timeout=240)
    expected = done_again["metrics"]["performance"]["throughput"]["estimated"]
    assert expected["basis"] == "measured"  # the run's bar and ETA came from the history
    assert done_again["progress"]["eta_s"] == 0.0


def _sample(kind: SampleKind, units: float, seconds: float, size: int = 100) -> ThroughputSample:
    return ThroughputSample(kind, units, seconds, size, "auto", "bf16", "cpu", 64, 32)


def test_history_medians_per_host_prunes_and_falls_back_to_the_busiest_host(
    backend: Backend, tmp_path: Path
) -> None:
    runtime = Runtime.build(make_settings(backend, tmp_path / "data"))
    try:
        here = ThroughputHistory(runtime.db, "worker-a")
        there = ThroughputHistory(runtime.db, "api-host")
        assert here.rates(model_params=100, requested_precision="auto") is None
        encode_rates = [100.0, 300.0, 200.0]
        for rate in encode_rates:
            with runtime.db.transaction() as session:
                here.repo.add(
                    session, host="worker-a",
                    samples=[_sample(SampleKind.encode, rate, 1.0),
                             _sample(SampleKind.train, rate / 10, 1.0),
                             _sample(SampleKind.fixed, 1, rate / 100)],
                    model_id=None, task_id=None, now=utcnow(),
                )
        rates = here.rates(model_params=100, requested_precision="auto")
        assert rates is not None and rates.host == "worker-a"
        assert rates.encode_tokens_per_s == 200.0 and rates.train_tokens_per_s == 20.0
        assert rates.fixed_s == 2.0 and rates.samples == {"encode": 3, "train": 3, "fixed": 3}
        assert rates.precision["train"] == "bf16"
        # an API host with no history of its own estimates from the workers' host
        assert there.rates(model_params=100, requested_precision="auto") == rates
        # but not for another size, nor another precision setting, nor when asked for itself
        assert there.rates(model_params=999, requested_precision="auto") is None
        assert there.rates(model_params=100, requested_precision="fp32") is None
        assert there.rates(model_params=100, requested_precision="auto", host="api-host") is None

        for i in range(KEEP_PER_HOST_KIND + 5):  # the newest win the median; the oldest go
            with runtime.db.transaction() as session:
                here.repo.add(session, host="worker-a",
                              samples=[_sample(SampleKind.encode, 1000.0 + i, 1.0)],
                              model_id=None, task_id=None, now=utcnow())
        rates = here.rates(model_params=100, requested_precision="auto")
        assert rates is not None
        newest = [1000.0 + i for i in range(KEEP_PER_HOST_KIND + 5)][-RECENT_PER_KIND:]
        assert rates.encode_tokens_per_s == sorted(newest)[RECENT_PER_KIND // 2]
        with runtime.db.read() as session:
            kept = [s for s in here.repo.recent(session, host="worker-a", model_params=100,
                                                requested_precision="auto", limit=1000)
                    if s.kind is SampleKind.encode]
        assert len(kept) == KEEP_PER_HOST_KIND
    finally:
        runtime.close()


def test_a_malformed_sample_is_skipped_not_fatal(backend: Backend, tmp_path: Path) -> None:
    runtime = Runtime.build(make_settings(backend, tmp_path / "data"))
    try:
        history = ThroughputHistory(runtime.db, "w")
        good = {"kind": "train", "units": 10.0, "seconds": 2.0, "model_params": 5,
                "requested_precision": "auto", "precision": "fp32", "device": "cpu",
                "seq_length": 64, "batch_size": 8}
        with runtime.db.transaction() as session:
            stored = history.record(
                session, task_id="t1", model_id=None,
                performance={"throughput": {"samples": [good, {"kind": "warp"}]}},
            )
            assert history.record(session, task_id="t2", model_id=None, performance={}) == 0
        assert stored == 1
        rates = history.rates(model_params=5, requested_precision="auto")
        assert rates is not None and rates.train_tokens_per_s == 5.0
    finally:
        runtime.close()

