"""A run's phases as seen from outside: one progress bar across them, and a clock per phase.

The bar gives each phase a share proportional to its estimated duration, so training dominates
it when it dominates the run; the clock records wall time and peak memory after each phase for
`metrics["performance"]`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

# Overall progress is reported on this scale; the training step is in `train_step` (extra).
PROGRESS_UNITS = 1000


class Progress(Protocol):
    """Reports progress (and stops the run if it was canceled)."""

    def __call__(self, step: int, total_steps: int, message: str, **extra: Any) -> None: ...


class PhaseProgress:
    """Reports one overall progress across phases, each phase's share proportional to its
    estimated duration, so training dominates the bar when it dominates the run."""

    def __init__(self, progress: Progress, weights: Mapping[str, float]) -> None:
        self._progress = progress
        total = sum(weights.values()) or 1.0
        self._spans: dict[str, tuple[float, float]] = {}
        start = 0.0
        for phase, weight in weights.items():
            self._spans[phase] = (start, weight / total)
            start += weight / total

    def report(self, phase: str, fraction: float = 0.0, **extra: Any) -> None:
        start, width = self._spans[phase]
        overall = start + width * min(max(fraction, 0.0), 1.0)
        step = min(round(overall * PROGRESS_UNITS), PROGRESS_UNITS)
        self._progress(step, PROGRESS_UNITS, phase, **extra)


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
