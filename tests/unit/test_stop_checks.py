"""`stop_checks`: a raised stop flag stops a model mid-pass, forward or backward, and the hooks
are gone afterwards however the block ended."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from embtune.errors import TaskStopped
from embtune.training.stop_checks import stop_checks


class Block(nn.Module):
    """A layer with children (as a transformer layer has), recording that it ran."""

    def __init__(self, index: int, ran: list[int], on_run: object = None) -> None:
        super().__init__()
        self.index, self.ran, self.on_run = index, ran, on_run
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.ran.append(self.index)
        if callable(self.on_run):
            self.on_run(self.index)
        return torch.relu(self.linear(x))


def model_of(blocks: int, ran: list[int], on_run: object = None) -> nn.Module:
    return nn.Sequential(*(Block(i, ran, on_run) for i in range(blocks)))


def hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def test_a_flag_raised_inside_a_forward_pass_stops_it_at_the_next_layer() -> None:
    ran: list[int] = []
    stop = {"now": False}

    def raise_flag_in_layer_2(index: int) -> None:
        stop["now"] = stop["now"] or index == 2

    model = model_of(6, ran, raise_flag_in_layer_2)
    with pytest.raises(TaskStopped), stop_checks(model, lambda: stop["now"]):
        model(torch.ones(1, 4))
    assert ran == [0, 1, 2]  # layers 3-5 never ran
    assert hooks_left(model) == 0
    stop["now"] = False
    model(torch.ones(1, 4))  # the model works as before
    assert ran[-6:] == [0, 1, 2, 3, 4, 5]


def test_a_flag_raised_during_backward_stops_before_the_gradients_are_complete() -> None:
    ran: list[int] = []
    model = model_of(4, ran)
    stop = {"now": False}
    with stop_checks(model, lambda: stop["now"]):
        loss = model(torch.ones(2, 4)).sum()
        stop["now"] = True  # canceled between the forward and the backward pass
        with pytest.raises(TaskStopped):
            loss.backward()
    first_layer = model[0].linear.weight
    assert first_layer.grad is None  # the gradient never reached the first layer
    assert hooks_left(model) == 0


def test_no_check_without_the_block_and_none_after_a_normal_exit() -> None:
    ran: list[int] = []
    model = model_of(3, ran)
    calls: list[int] = []
    with stop_checks(model, lambda: calls.append(1) or False):
        model(torch.ones(1, 4)).sum().backward()
    assert calls  # checked inside the pass
    checked = len(calls)
    model(torch.ones(1, 4)).sum().backward()
    assert len(calls) == checked and hooks_left(model) == 0
