"""Stop checks inside a model's forward and backward passes, so a cancel stops a run mid-step.

Between steps, the trainer's callback checks the stop flag, and the evaluation between encoding
batches; on a CPU one training step or one encoding batch of long texts takes seconds, and the
cancel would wait for it. While `stop_checks` is active, every module of the model that has
children (the transformer, each of its layers, their attention and feed-forward blocks) checks
the flag before it runs forward, and, when gradients are being computed, again when its gradient
arrives in the backward pass; a raised flag raises `TaskStopped` right there.

`TaskStopped` is a BaseException: the HF trainer, accelerate and sentence-transformers catch
`Exception` in places, never BaseException, so it unwinds the whole call (their `finally`
blocks and context managers restore autocast and grad modes as they go). The hooks are removed
when the block ends, however it ends, so a model that is saved, served or trained again after
the run carries none of them. Leaf modules (linear layers, norms, dropouts) get no hook: the
check would cost more there than it saves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from embtune.errors import TaskStopped

STOPPED = "the run was canceled or taken over during a forward or backward pass"


@contextmanager
def stop_checks(model: nn.Module, should_stop: Callable[[], bool]) -> Iterator[None]:
    """Raise `TaskStopped` from inside `model`'s passes once `should_stop()` is true."""

    def check(*_: Any) -> None:
        if should_stop():
            raise TaskStopped(STOPPED)

    def before_forward(module: nn.Module, args: Any) -> None:
        check()

    def after_forward(module: nn.Module, args: Any, output: Any) -> None:
        # Checked again when the gradient of this module's output arrives (backward pass).
        tensor = _first_tensor(output)
        if tensor is not None and tensor.requires_grad and torch.is_grad_enabled():
            tensor.register_hook(check)

    handles = []
    try:
        for module in model.modules():
            if next(module.children(), None) is None:
                continue
            handles.append(module.register_forward_pre_hook(before_forward))
            handles.append(module.register_forward_hook(after_forward))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _first_tensor(output: Any) -> torch.Tensor | None:
    """The tensor a module returns, or the first of a tuple/dict it returns (HF layers return
    tuples, sentence-transformers modules dicts of features)."""
    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if isinstance(output, dict) else output
    if isinstance(values, list | tuple) or isinstance(output, dict):
        for value in values:
            if isinstance(value, torch.Tensor):
                return value
    return None
