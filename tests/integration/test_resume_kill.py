"""The issue's test: a worker killed (SIGKILL) after a training checkpoint; recovery re-queues the
task, another worker resumes from the checkpoint, re-does fewer steps, and ends with the weights
of an uninterrupted run with the same seed; the task's checkpoints are gone once it is done."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from embtune.training.checkpoints import last_complete
from tests.conftest import events, make_settings, register_model, task_status, wait_until
from tests.integration.test_real_finetune import ingest_shop
from tests.support.backends import Backend
from tests.support.processes import spawn

# two real fine-tunes and two worker start-ups: a minute on an idle box, more on a busy one
pytestmark = [pytest.mark.backends("postgres-redis"), pytest.mark.timeout(600)]

TASKS = "/api/v1/fine-tuning/task"
# fp32: the same seed and data give the same weights bit for bit on one host; 1e-5 leaves room
# for a different summation order only (a lost step would move weights by ~1e-4 and more).
TOLERANCE = 1e-5
TERMINAL = {"done", "failed", "refused", "canceled"}
PARAMS = {"max_seq_length": 32, "batch_size": 8, "learning_rate": 2e-4, "epochs": 2, "seed": 3,
          "precision": "fp32"}


def _finished(client: TestClient, task_id: str, worker_log: Path) -> dict[str, Any]:
    task = wait_until(lambda: (t := task_status(client, task_id))["status"] in TERMINAL and t,
                      400, 0.2)
    tail = "\n".join(worker_log.read_text(errors="replace").splitlines()[-30:])
    assert task["status"] == "done", f"{task['detail']}\n{tail}"
    return task


def _weights(client: TestClient, model_id: str) -> dict[str, torch.Tensor]:
    source = client.get(f"/api/v1/embedding-models/{model_id}").json()["source"]
    return load_file(str(Path(source) / "model.safetensors"))


def test_a_killed_worker_resumes_from_its_checkpoint_to_the_uninterrupted_weights(
    backend: Backend, client_factory: Callable[..., TestClient], tmp_path: Path,
    processes: list[subprocess.Popen],
) -> None:
    client = client_factory(run_worker=False)
    ingest_shop(client)
    model_id = register_model(client, plugin="sentence-transformers-mnrl")
    worker_dir = tmp_path / "worker"  # both workers: one host, one model store
    checkpoints = make_settings(backend, worker_dir).models_dir / ".checkpoints"
    worker_log = tmp_path / "workers.log"
    processes.append(spawn(backend, worker_dir, "worker", log=worker_log))
    task: dict[str, Any] = client.post(TASKS, json={
        "embedding_model_id": model_id, "params": {**PARAMS, "checkpoint_every_steps": 2},
    }).json()

    wait_until(lambda: last_complete(checkpoints / task["id"]), 300, 0.01)
    processes[0].send_signal(signal.SIGKILL)
    processes[0].wait(timeout=10)
    at_kill = last_complete(checkpoints / task["id"])
    assert at_kill is not None
    processes.append(spawn(backend, worker_dir, "worker", log=worker_log))

    done = _finished(client, task["id"], worker_log)
    assert done["attempts"] == 2
    training = done["metrics"]["training"]
    resumed = training["resumed_from_step"]
    assert resumed >= at_kill.step > 0  # fewer steps re-done: it went on from a checkpoint
    messages = [e["message"] for e in events(client, task["id"]) if e["kind"] == "progress"]
    assert f"resumed from step {resumed} of {training['steps']}" in messages
    # deleted by the run right after its final commit
    wait_until(lambda: not (checkpoints / task["id"]).exists(), 30)

    # the same batch, seed and params, uninterrupted and without checkpoints
    plain = client.post(TASKS, json={
        "embedding_model_id": model_id, "params": PARAMS, "batch_id": done["batch_id"],
    }).json()
    reference = _finished(client, plain["id"], worker_log)
    assert reference["metrics"]["training"]["resumed_from_step"] is None
    first = _weights(client, done["result_model_id"])
    second = _weights(client, reference["result_model_id"])
    assert first.keys() == second.keys()
    difference = max(float((first[k] - second[k]).abs().max()) for k in first)
    assert difference <= TOLERANCE
    assert done["metrics"]["after"]["ndcg@10"] == pytest.approx(
        reference["metrics"]["after"]["ndcg@10"], abs=1e-6
    )
