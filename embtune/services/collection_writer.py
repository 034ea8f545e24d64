"""Writes one run's vectors into its new collection: created at the first block (its dimension
known then), written in blocks, with progress, an ETA and where the vectors came from reported
after each, and a cancel seen between blocks."""

from __future__ import annotations

import time

import numpy as np

from embtune.errors import TaskStopped
from embtune.services.live_run import LiveRun
from embtune.sinks.base import VectorSink

WRITE_BLOCK = 1024  # rows handed to the sink at a time (it batches further)


class CollectionWriter:
    """Creates the collection at the first block (its dimension known then), writes blocks,
    reports progress with an ETA, and sees a cancel between blocks."""

    def __init__(self, sink: VectorSink, collection: str, model_id: str, live: LiveRun) -> None:
        self.sink = sink
        self.collection = collection
        self.model_id = model_id
        self.live = live
        self.created = False
        self.rows = 0
        self.dim = 0
        self.total = 0
        self.write_s = 0.0
        self.started = time.monotonic()
        self.figures: dict[str, int] = {}

    def check(self) -> None:
        if self.live.stop.is_set():
            raise TaskStopped("reindex canceled or taken over")

    def add(
        self, ids: list[str], vectors: np.ndarray, hashes: list[str], phase: str, **figures: int
    ) -> None:
        """`figures`: where the vectors so far came from (encoded, reused, copied), shown with
        the progress by the CLI and the dashboard."""
        self.check()
        self.figures.update(figures)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        started = time.monotonic()
        if not self.created:
            self.dim = int(vectors.shape[1])
            self.sink.create(self.collection, self.dim)
            self.created = True
        for start in range(0, len(ids), WRITE_BLOCK):
            end = start + WRITE_BLOCK
            self.sink.write(self.collection, ids[start:end], vectors[start:end],
                            hashes[start:end], self.model_id)
        self.write_s += time.monotonic() - started
        self.rows += len(ids)
        elapsed = time.monotonic() - self.started
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        eta = round((self.total - self.rows) / rate, 1) if rate > 0 else None
        self.live.report(step=self.rows, total_steps=self.total, message=phase, eta_s=eta,
                         items_per_s=round(rate, 2), **self.figures)
