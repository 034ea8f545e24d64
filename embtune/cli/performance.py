"""Terminal rendering of how fast a run went and how long one would take: the performance table
`embtune task show` prints for a finished task, and the estimate line of `embtune task preflight`.

It sits in `cli` rather than beside `console_report`: only the task commands show it, and the
layer test names every top-level module it allows.

Every figure is optional. Older tasks and third-party methods report none of the sections, or
only some (no FLOP counts, no estimate, a peak that was never measured for a precision), and a
missing figure is shown as a dash, never guessed. An estimate's fixed cost covers load, examples
and save together, so it is compared with their sum on a row of its own, not split across them.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

# (key in phases_s / utilization.phases, label, key of its estimate in throughput.estimated)
PHASES: tuple[tuple[str, str, str | None], ...] = (
    ("load", "load", None),
    ("examples", "examples", None),
    ("evaluate_source", "evaluate source", "evaluate_source_s"),
    ("train", "train", "train_s"),
    ("evaluate_tuned", "evaluate tuned", "evaluate_tuned_s"),
    ("save", "save", None),
)
FIXED = ("load", "examples", "save")
BASIS = {
    "measured": "estimated from the measured throughput of earlier runs of this model size",
    "constants": "estimated from fixed constants: no run of this model size measured yet",
}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _fixed(value: Any, digits: int = 1) -> str:
    number = _number(value)
    return "—" if number is None else f"{number:.{digits}f}"


def _percent(fraction: Any) -> str:
    number = _number(fraction)
    return "—" if number is None else f"{number:.1%}"


def _peaks_caption(utilization: dict[str, Any]) -> str:
    """`peak fp32 151 GFLOP/s, bf16 403 GFLOP/s (cpu, 2 threads)`: what "% of peak" divides by."""
    peaks = [f"{name} {number:.0f} GFLOP/s" for name, value in
             _dict(utilization.get("peak_gflops")).items()
             if (number := _number(value)) is not None]
    if not peaks:
        return "no matmul peak measured on this host: % of peak unknown"
    probe = _dict(utilization.get("peak_probe"))
    where = [str(probe["device"])] if probe.get("device") else []
    if _number(probe.get("threads")) is not None:
        where.append(f"{probe['threads']} threads")
    return "peak " + ", ".join(peaks) + (f" ({', '.join(where)})" if where else "")


def _totals_caption(performance: dict[str, Any], estimated: dict[str, Any]) -> str | None:
    """The run's total against its estimate, and the one-off cost the estimate leaves out."""
    total, expected = _number(performance.get("total_s")), _number(estimated.get("total_s"))
    if total is None:
        return None
    line = f"took {total:.1f} s"
    if expected:
        line += f", estimated {expected:.1f} s ({(total - expected) / expected:+.0%})"
    once = _number(_dict(performance.get("throughput")).get("once_per_process_s"))
    if once is not None and once >= 0.05:
        line += (f"; {once:.1f} s of the load was paid once per worker process (imports, the "
                 "peak probe), which estimates leave out")
    return line


def performance_table(metrics: dict[str, Any] | None) -> Table | None:
    """Each phase's seconds beside its estimate, and each model phase's FLOP rate against the
    host's peak; None for a task whose metrics have no `performance` section."""
    performance = _dict((metrics or {}).get("performance"))
    if not performance:
        return None
    seconds = _dict(performance.get("phases_s"))
    utilization = _dict(performance.get("utilization"))
    work = _dict(utilization.get("phases"))
    estimated = _dict(_dict(performance.get("throughput")).get("estimated"))

    caption = [_peaks_caption(utilization)] if utilization else []
    if estimated.get("basis") in BASIS:
        caption.append(BASIS[estimated["basis"]])
    totals = _totals_caption(performance, estimated)
    if totals:
        caption.append(totals)
    title = "Performance: seconds per phase, FLOP rate against the host's peak"
    table = Table(title=title, caption="\n".join(caption) or None, min_width=len(title) + 2)
    for name in ("phase", "seconds", "estimated s", "precision", "GFLOP", "GFLOP/s",
                 "% of peak"):
        table.add_column(name, justify="left" if name in ("phase", "precision") else "right",
                         no_wrap=True)

    for key, label, estimate_key in PHASES:
        if key not in seconds and key not in work:
            continue
        phase = _dict(work.get(key))
        table.add_row(
            Text(label),
            Text(_fixed(seconds.get(key, phase.get("seconds")))),
            Text(_fixed(estimated.get(estimate_key)) if estimate_key and estimated else ""),
            Text(str(phase.get("precision") or "")),
            Text(_fixed(phase.get("gflop")) if phase else ""),
            Text(_fixed(phase.get("achieved_gflops")) if phase else ""),
            Text(_percent(phase.get("fraction_of_peak")) if phase else ""),
        )
    fixed = [_number(seconds.get(key)) for key in FIXED]
    if estimated and any(value is not None for value in fixed):
        table.add_row(
            Text("fixed (load, examples, save)", style="dim"),
            Text(f"{sum(value or 0.0 for value in fixed):.1f}", style="dim"),
            Text(_fixed(estimated.get("fixed_s")), style="dim"),
            "", "", "", "",
        )
    return table


def _samples(samples: Any) -> str:
    counts = [f"{count} {kind}" for kind, count in _dict(samples).items()
              if _number(count) is not None]
    return ", ".join(counts) + " samples" if counts else "no samples"


def estimate_line(preflight: dict[str, Any]) -> Text | None:
    """How long a task would take and what that figure rests on (the worker's measured
    throughput, else fixed constants); None when the method estimates nothing."""
    estimate = _dict(preflight.get("estimate"))
    total = _number(preflight.get("estimated_seconds"))
    if total is None:
        parts = [_number(estimate.get(k)) for k in
                 ("fixed_s", "evaluate_source_s", "train_s", "evaluate_tuned_s")]
        total = sum(p for p in parts if p is not None) if estimate else None
    if total is None:
        return None
    line = Text(f"estimated {total:.0f} s", style="bold")
    host = estimate.get("host")
    if estimate.get("basis") == "measured":
        line.append(f" from measurements on {host or 'a worker host'} "
                    f"({_samples(estimate.get('samples'))})")
    elif estimate.get("basis") == "constants":
        line.append(" from fixed constants")
        line.append(f" (not enough measured yet: {host} has {_samples(estimate.get('samples'))})"
                    if host else " (no run of this model size measured yet)")
    if estimate.get("source_vectors_cached") is True:
        line.append("; source vectors cached (its evaluation only encodes the queries)")
    split = [(label, _number(estimate.get(key))) for label, key in
             (("fixed", "fixed_s"), ("evaluate source", "evaluate_source_s"),
              ("train", "train_s"), ("evaluate tuned", "evaluate_tuned_s"))]
    shown = [f"{label} {value:.0f} s" for label, value in split if value is not None]
    if shown:
        line.append(f"  [{', '.join(shown)}]", style="dim")
    return line
