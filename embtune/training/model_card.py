"""The README a tuned model is saved with.

`model.save` copies the source model's README, which would describe the source as if it were
the tuned model; the run replaces it with this card. Aggregates only: no query text goes in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CardFacts:
    """Who made the model from what: the method, the source model and the task."""

    method: str
    source_name: str
    source_id: str
    task_id: str


def write_model_card(output_dir: Path, facts: CardFacts, metrics: Mapping[str, Any]) -> None:
    """Write `README.md` into `output_dir` from the run's metrics."""
    lines = [
        f"# {facts.source_name}, fine-tuned on search clicks",
        "",
        f"Trained by embtune with the `{facts.method}` method from source model "
        f"`{facts.source_name}` (id `{facts.source_id}`, task `{facts.task_id}`). The source "
        "model's own card states its license and intended use, which this model inherits.",
        "",
        "Retrieval on held-out search sessions, over the whole catalogue "
        f"({metrics['data']['validation_queries']} of "
        f"{metrics['data']['validation_queries_total']} "
        "validation queries):",
        "",
        "| metric | source | tuned |",
        "|---|---|---|",
        *(
            f"| {name} | {value:.4f} | {metrics['after'][name]:.4f} |"
            for name, value in metrics["before"].items()
        ),
        "",
        "Parameters:",
        "",
        "```json",
        json.dumps(metrics["params"], indent=2, sort_keys=True),
        "```",
        "",
    ]
    Path(output_dir, "README.md").write_text("\n".join(lines), encoding="utf-8")
