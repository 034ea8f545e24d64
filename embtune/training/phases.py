"""A run's phases as seen from outside: one progress bar across them, and a clock per phase.

The bar gives each phase a share proportional to its estimated duration, so training dominates
it when it dominates the run; the clock records wall time and peak memory after each phase for
`metrics["performance"]`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

# Overall progress is reported on this scale; the training step is in `train_step` (extra).
PROGRESS_UNITS = 1000


class Progress(Protocol):
    """Reports progress (and stops the run if it was canceled)."""

    def __call__(self, step: int, total_steps: int, message: str, **extra: Any) -> None: ...


class PhaseProgress:
    """Reports one overall progress across phases, each phase's share proportional to its
    estimated duration, so training dominates the bar when it dominates the run; and the time
    left (`eta_s`): what is left of this phase plus the estimates of the phases after it.

    What is left of this phase is the caller's figure where it has one (the trainer's), else the
    phase's pace so far once a twentieth of it is done, else its estimate less the time spent.
    The estimates of later phases can be revised as the run learns (`revise`); the bar's shares
    stay as they were, so it never jumps back.
    """

    def __init__(
        self,
        progress: Progress,
        weights: Mapping[str, float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._progress = progress
        self._clock = clock
        total = sum(weights.values()) or 1.0
        self._spans: dict[str, tuple[float, float]] = {}
        self._estimates = dict(weights)
        self._order = list(weights)
        start = 0.0
        for phase, weight in weights.items():
            self._spans[phase] = (start, weight / total)
            start += weight / total
        self._phase: str | None = None
        self._phase_started = 0.0

    def revise(self, phase: str, seconds: float) -> None:
        self._estimates[phase] = seconds

    def report(
        self,
        phase: str,
        fraction: float = 0.0,
        *,
        phase_left_s: float | None = None,
        **extra: Any,
    ) -> None:
        now = self._clock()
        if phase != self._phase:
            self._phase, self._phase_started = phase, now
        fraction = min(max(fraction, 0.0), 1.0)
        start, width = self._spans[phase]
        step = min(round((start + width * fraction) * PROGRESS_UNITS), PROGRESS_UNITS)
        left = self._left(phase, fraction, now - self._phase_started, phase_left_s)
        later = self._order[self._order.index(phase) + 1:]
        eta = left + sum(self._estimates[name] for name in later)
        self._progress(step, PROGRESS_UNITS, phase, eta_s=round(eta, 1), **extra)

    def _left(
        self, phase: str, fraction: float, elapsed: float, given: float | None
    ) -> float:
        if given is not None:
            return max(given, 0.0)
        if fraction >= 1.0:
            return 0.0
        if fraction >= 0.05 and elapsed > 0:
            return elapsed * (1 - fraction) / fraction
        return max(self._estimates[phase] - elapsed, 0.0)


class PhaseClock:
    """Wall time and peak resident memory after each phase of a run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = time.monotonic() - started
            peak = peak_rss_mb()
            if peak is not None:
                self.peak_rss_mb[name] = peak

    def summary(self) -> dict[str, Any]:
        order = ("load", "examples", "evaluate_source", "train", "evaluate_tuned", "save")
        phases = {name: round(self.seconds[name], 3) for name in order if name in self.seconds}
        return {
            "phases_s": phases,
            "total_s": round(sum(self.seconds.values()), 3),
            "peak_rss_mb": dict(self.peak_rss_mb),
        }


def peak_rss_mb() -> float | None:
    """The process's peak resident set so far (MiB); None where the OS does not say."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)
