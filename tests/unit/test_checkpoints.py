"""Training checkpoints: only complete ones count, pruning keeps the newest complete, another
configuration's are dropped, and a run stopped after a checkpoint resumes to the weights an
uninterrupted run ends with."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from embtune.clickstream.sessions import SearchSession, build_examples
from embtune.errors import TaskStopped
from embtune.training.checkpoints import (
    COMPLETE,
    FINGERPRINT,
    adopt,
    last_complete,
    list_checkpoints,
    mark_complete,
    prune,
)
from embtune.training.hooks import TrainingHooks
from embtune.training.models import load_model
from embtune.training.trainer import TrainParams, fine_tune, mnrl_rows

# fp32 on CPU: the same seed and rows give bit-identical weights, so a resumed run must match an
# uninterrupted one to float rounding; 1e-5 leaves room for a different summation order only.
TOLERANCE = 1e-5


def _checkpoint(root: Path, step: int, *, complete: bool) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if complete:
        mark_complete(path, step)
    return path


def test_an_unmarked_checkpoint_is_never_the_one_to_resume_from(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 2, complete=True)
    _checkpoint(tmp_path, 4, complete=False)  # a save a kill cut short
    resume = last_complete(tmp_path)
    assert resume is not None and resume.step == 2
    assert json.loads((resume.path / COMPLETE).read_text()) == {"step": 2}


def test_no_complete_checkpoint_means_nothing_to_resume(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 2, complete=False)
    assert last_complete(tmp_path) is None
    assert last_complete(tmp_path / "missing") is None


def test_prune_keeps_the_newest_complete_and_drops_cut_short_saves_below_them(
    tmp_path: Path,
) -> None:
    for step in (2, 4, 6):
        _checkpoint(tmp_path, step, complete=True)
    _checkpoint(tmp_path, 3, complete=False)
    _checkpoint(tmp_path, 8, complete=False)  # newer than every complete one: may be in progress
    prune(tmp_path, keep=2)
    assert [(c.step, c.complete) for c in list_checkpoints(tmp_path)] == [
        (4, True), (6, True), (8, False)
    ]


def test_prune_never_deletes_the_only_complete_checkpoint(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 2, complete=True)
    _checkpoint(tmp_path, 4, complete=False)
    prune(tmp_path, keep=0)
    assert [c.step for c in list_checkpoints(tmp_path) if c.complete] == [2]


def test_adopt_drops_another_configurations_checkpoints(tmp_path: Path) -> None:
    assert adopt(tmp_path, "config-a") is None
    _checkpoint(tmp_path, 2, complete=True)
    resume = adopt(tmp_path, "config-a")
    assert resume is not None and resume.step == 2
    assert adopt(tmp_path, "config-b") is None  # e.g. the task restarted with new params
    assert list_checkpoints(tmp_path) == []
    assert json.loads((tmp_path / FINGERPRINT).read_text()) == {"fingerprint": "config-b"}


def test_adopt_clears_incomplete_checkpoints_before_a_run(tmp_path: Path) -> None:
    adopt(tmp_path, "config-a")
    _checkpoint(tmp_path, 2, complete=True)
    _checkpoint(tmp_path, 4, complete=False)
    resume = adopt(tmp_path, "config-a")
    assert resume is not None and resume.step == 2
    assert [c.step for c in list_checkpoints(tmp_path)] == [2]


def test_the_callback_saves_when_its_interval_passed_but_never_at_the_last_step(
    tmp_path: Path,
) -> None:
    from embtune.training.checkpoints import CheckpointCallback

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    timed = CheckpointCallback(tmp_path, keep=1, every_s=0.0)  # due after every step
    control = TrainerControl()
    timed.on_step_end(args, TrainerState(global_step=3, max_steps=10), control)
    assert control.should_save
    timed.on_step_end(args, TrainerState(global_step=10, max_steps=10), control)
    assert not control.should_save  # the final model is saved apart
    untimed, control = CheckpointCallback(tmp_path, keep=1), TrainerControl()
    untimed.on_step_end(args, TrainerState(global_step=3, max_steps=10), control)
    assert not control.should_save  # steps alone: the trainer's save_steps decides


def test_the_callback_marks_each_save_complete_and_prunes(tmp_path: Path) -> None:
    from embtune.training.checkpoints import CheckpointCallback

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    callback = CheckpointCallback(tmp_path, keep=1)
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
        callback.on_save(args, TrainerState(global_step=step, max_steps=10), TrainerControl())
    assert [(c.step, c.complete) for c in list_checkpoints(tmp_path)] == [(4, True)]
    assert callback.saves == 2


# -- resuming a real training run ------------------------------------------------------------

ITEMS = {f"i{n:02d}": f"product number {n} in the {c} aisle" for n, c in enumerate(
    ["shoe", "coat", "audio", "coffee", "sport", "kitchen", "leather", "computer", "lamp", "bag",
     "pan", "rain", "trail", "speaker", "espresso", "roller"]
)}
SESSIONS = [
    SearchSession(f"s{n:02d}", f"query about {text.split()[-2]} {n}", (f"i{n:02d}",
                  f"i{(n + 1) % 16:02d}"), (f"i{n:02d}",))
    for n, text in enumerate(ITEMS.values())
]
PARAMS = {
    "epochs": 3, "batch_size": 4, "max_seq_length": 32, "min_examples": 1, "seed": 11,
    "precision": "fp32", "checkpoint_every_steps": 2, "learning_rate": 1e-3,
}


class StopAtStep(TrainerCallback):
    """Stops the run the way a canceled or killed run stops: out of a step, with no save."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step == self.step:
            raise TaskStopped("stopped by the test")


@pytest.fixture(scope="module")
def base_model() -> SentenceTransformer:
    return load_model("builtin:all-MiniLM-L6-v2", max_seq_length=32, device="cpu")


def _train(
    base: SentenceTransformer, out: Path, hooks: TrainingHooks | None, resumes: list[Any],
    **params: Any,
) -> tuple[SentenceTransformer, Any]:
    model = copy.deepcopy(base)
    rows = mnrl_rows(build_examples(SESSIONS), ITEMS)
    outcome = fine_tune(
        model, rows, "mnrl", TrainParams(**{**PARAMS, **params}), out, lambda _: None,
        lambda: False, hooks=hooks, on_resume=lambda step, total: resumes.append((step, total)),
    )
    return model, outcome


def _max_difference(a: SentenceTransformer, b: SentenceTransformer) -> float:
    first, second = a.state_dict(), b.state_dict()
    return max(float((first[k] - second[k]).abs().max()) for k in first)


def test_a_stopped_run_resumes_from_its_checkpoint_to_the_uninterrupted_weights(
    base_model: SentenceTransformer, tmp_path: Path
) -> None:
    plain, plain_outcome = _train(base_model, tmp_path / "a", None, [])
    assert plain_outcome.steps == 12 and plain_outcome.resumed_from_step is None

    checkpoints = tmp_path / "checkpoints"
    stop = TrainingHooks(checkpoint_dir=checkpoints, checkpoint_keep=1, callbacks=[StopAtStep(7)])
    with pytest.raises(TaskStopped):
        _train(base_model, tmp_path / "b1", stop, [])
    # steps 2, 4 and 6 were saved; keep=1 left the newest complete one
    assert [(c.step, c.complete) for c in list_checkpoints(checkpoints)] == [(6, True)]

    resumes: list[Any] = []
    resumed, outcome = _train(
        base_model, tmp_path / "b2", TrainingHooks(checkpoint_dir=checkpoints), resumes
    )
    assert outcome.resumed_from_step == 6 and resumes == [(6, 12)]
    assert outcome.steps == 12
    assert _max_difference(plain, resumed) <= TOLERANCE
    assert _max_difference(plain, base_model) > 1e-3, "training did not change the weights"
    # the run's last step is not checkpointed: the final model is saved apart
    assert [c.step for c in list_checkpoints(checkpoints)] == [8, 10]


def test_checkpoints_of_other_params_are_not_resumed_from(
    base_model: SentenceTransformer, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    stop = TrainingHooks(checkpoint_dir=checkpoints, callbacks=[StopAtStep(3)])
    with pytest.raises(TaskStopped):
        _train(base_model, tmp_path / "b1", stop, [], epochs=1)
    resumes: list[Any] = []
    _, outcome = _train(
        base_model, tmp_path / "b2", TrainingHooks(checkpoint_dir=checkpoints), resumes,
        epochs=1, learning_rate=2e-3,
    )
    assert outcome.resumed_from_step is None and resumes == []
