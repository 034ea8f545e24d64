from __future__ import annotations

import pytest

from embtune.domain.retry import RetryDecision, RetryPolicy
from embtune.domain.tasks import TaskStatus, Transition


def test_status_parse_is_case_insensitive_and_names_valid_values() -> None:
    assert TaskStatus.parse("PROCESSING") is TaskStatus.processing
    with pytest.raises(ValueError, match="valid: pending, processing, done"):
        TaskStatus.parse("running")


@pytest.mark.parametrize(
    ("transition", "allowed"),
    [
        (Transition.claim, {"pending"}),
        (Transition.complete, {"processing"}),
        (Transition.fail, {"processing"}),
        (Transition.refuse, {"processing"}),
        (Transition.cancel, {"pending", "processing"}),
        (Transition.restart, {"pending", "failed", "canceled", "refused"}),
        (Transition.requeue, {"processing"}),
        (Transition.give_up, {"processing"}),
    ],
)
def test_transition_sources(transition: Transition, allowed: set[str]) -> None:
    assert {s.value for s in transition.sources} == allowed


def test_nothing_leaves_canceled_but_a_restart() -> None:
    leaving = [t for t in Transition if t.allows(TaskStatus.canceled)]
    assert leaving == [Transition.restart]


def test_a_done_task_is_never_left_but_stays_done() -> None:
    """Its registered model points to it: no transition may wipe its result."""
    assert not any(t.allows(TaskStatus.done) for t in Transition)


def test_finished_results_are_never_overwritten_by_a_worker() -> None:
    worker_moves = (Transition.complete, Transition.fail, Transition.refuse, Transition.claim)
    for status in (TaskStatus.done, TaskStatus.failed, TaskStatus.refused):
        assert not any(t.allows(status) for t in worker_moves)


def test_retry_policy_requeues_until_the_limit() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.decide(n) for n in (1, 2, 3, 4)] == [
        RetryDecision.requeue,
        RetryDecision.requeue,
        RetryDecision.give_up,
        RetryDecision.give_up,
    ]
    assert "3 attempt" in policy.give_up_detail(3)


def test_every_transition_is_its_own_member() -> None:
    # equal rule values would make one an alias of the other (`give_up.name == "fail"`)
    names = [t.name for t in Transition]
    assert len(names) == len(Transition.__members__)
    assert Transition.give_up.name == "give_up"
