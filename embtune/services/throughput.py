"""The per-host history of what workers achieved, and the rates estimates are made from.

A worker records the samples a finished run measured (`metrics.performance.throughput`) under
its host's name, in the same transaction that marks the task done. Preflight (in the API
process, wherever the workers are) and a starting run (on the worker) ask for the rates of one
model size and precision setting: the median of the latest samples of each kind, from the host
asked for, else from the host that most recently ran a model of that size.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from statistics import median
from typing import Any

from sqlalchemy.orm import Session

from embtune.domain.throughput import MeasuredRates, SampleKind, ThroughputSample
from embtune.storage.db import Database, utcnow
from embtune.storage.throughput_repo import ThroughputRepository
from embtune.training.throughput import model_params_of, sample_from_dict

log = logging.getLogger(__name__)

# The latest samples of each kind an estimate takes the median of: recent enough to follow a
# changed machine, several so one run on a busy host does not swing it.
RECENT_PER_KIND = 5


class ThroughputHistory:
    def __init__(self, db: Database, host: str) -> None:
        self.db = db
        self.host = host
        self.repo = ThroughputRepository()

    def record(
        self,
        session: Session,
        *,
        task_id: str,
        model_id: str | None,
        performance: Mapping[str, Any],
    ) -> int:
        """Store what a run measured; returns how many samples. A run that reported none (an
        older plugin, a third-party method) records nothing."""
        raw = (performance.get("throughput") or {}).get("samples") or []
        samples: list[ThroughputSample] = []
        for item in raw:
            try:
                samples.append(sample_from_dict(item))
            except (KeyError, TypeError, ValueError):
                log.warning("task %s reported a malformed throughput sample; skipped", task_id)
        self.repo.add(
            session, host=self.host, samples=samples, model_id=model_id, task_id=task_id,
            now=utcnow(),
        )
        return len(samples)

    def rates_for(
        self, source_dir: Path, params: Any, host: str | None = None
    ) -> MeasuredRates | None:
        """The rates for a run of the model in `source_dir` (its size read from its weight
        files) with a method's `params`; None for a method without a `precision` param."""
        requested = getattr(params, "precision", None)
        if not isinstance(requested, str):
            return None
        return self.rates(
            model_params=model_params_of(source_dir), requested_precision=requested, host=host
        )

    def rates(
        self, *, model_params: int | None, requested_precision: str, host: str | None = None
    ) -> MeasuredRates | None:
        """The medians of the latest samples, or None where no host has measured this size."""
        if model_params is None:
            return None
        with self.db.read() as session:
            chosen = host or self.host
            samples = self._recent(session, chosen, model_params, requested_precision)
            if not samples and host is None:
                other = self.repo.latest_host(session, model_params=model_params)
                if other is not None and other != chosen:
                    chosen = other
                    samples = self._recent(session, chosen, model_params, requested_precision)
        if not samples:
            return None
        by_kind: dict[SampleKind, list[ThroughputSample]] = {}
        for sample in samples:
            kind_samples = by_kind.setdefault(sample.kind, [])
            if len(kind_samples) < RECENT_PER_KIND:
                kind_samples.append(sample)

        def rate(kind: SampleKind) -> float | None:
            found = [s.rate for s in by_kind.get(kind, []) if s.rate > 0]
            return median(found) if found else None

        fixed = [s.seconds for s in by_kind.get(SampleKind.fixed, [])]
        return MeasuredRates(
            host=chosen,
            model_params=model_params,
            requested_precision=requested_precision,
            encode_tokens_per_s=rate(SampleKind.encode),
            train_tokens_per_s=rate(SampleKind.train),
            fixed_s=median(fixed) if fixed else None,
            samples={kind.value: len(found) for kind, found in by_kind.items()},
            precision={kind.value: found[0].precision for kind, found in by_kind.items()},
            device=samples[0].device,
        )

    def _recent(
        self, session: Session, host: str, model_params: int, requested_precision: str
    ) -> list[ThroughputSample]:
        return self.repo.recent(
            session, host=host, model_params=model_params,
            requested_precision=requested_precision, limit=RECENT_PER_KIND * 6,
        )
