"""What to do with a run whose worker stopped heart-beating: pure logic, unit-tested alone."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RetryDecision(enum.Enum):
    requeue = "requeue"
    give_up = "give_up"


@dataclass(frozen=True)
class RetryPolicy:
    """A lost run is retried until the task has been attempted `max_attempts` times."""

    max_attempts: int

    def decide(self, attempts: int) -> RetryDecision:
        return RetryDecision.requeue if attempts < self.max_attempts else RetryDecision.give_up

    def give_up_detail(self, attempts: int) -> str:
        return (
            f"worker stopped heart-beating; gave up after {attempts} attempt(s) "
            f"(limit {self.max_attempts})"
        )
