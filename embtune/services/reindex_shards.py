"""A reindex split into shards: item ranges that any number of worker processes write at once.

A shard is a task of its own (`TaskKind.reindex_shard`) on the one lifecycle: claimed by
compare-and-set on its message id, heart-beaten by its run's monitor, re-queued by recovery when
its worker dies, given up after `max_attempts`. The parent reindex task creates its shards in one
transaction (idempotency key `<parent>:a<attempt>:shard<i>`), sends their messages after the
commit and then *steals work*: every shard still pending is run inline through the runner's own
`handle`, whose claim makes a shard another worker already took a no-op. So one worker alone
finishes the job, and every extra worker takes shards off it.

Each shard writes its own part of the parent's collection (`VectorSink.write_part`); the parent
finishes the collection from the receipts of the shards that completed, counts it and leaves the
alias switch to the runner's done transaction, exactly as for an unsharded run. A shard whose
parent stopped (canceled, failed, re-queued into a new attempt) cancels itself at its next
block, so nothing writes into a collection that is being dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from embtune.artifacts import ArtifactStore
from embtune.domain.models import EmbeddingModel
from embtune.domain.tasks import Task, TaskKind, TaskStatus, Transition
from embtune.errors import TaskRefused, TaskStopped
from embtune.services.live_run import LiveRun
from embtune.services.tasks import new_task_row
from embtune.sinks.base import SinkError, VectorSink
from embtune.sinks.registry import SinkRegistry
from embtune.storage.db import Database, utcnow
from embtune.storage.items_repo import ItemRepository
from embtune.storage.tasks_repo import TaskRepository

log = logging.getLogger(__name__)

MAX_SHARDS = 256
POLL_S = 0.2  # how often the parent looks at its shards while others run them
REPORT_S = 0.5  # how often the parent's progress is aggregated from its shards
FAILED = frozenset({TaskStatus.failed, TaskStatus.refused, TaskStatus.canceled})

RunInline = Callable[[str, str], None]
Send = Callable[[str, str], Any]


def plan_ranges(object_ids: list[str], shards: int) -> list[tuple[str, str, int]]:
    """(first, last, items) of `shards` contiguous ranges of the sorted ids, equal in size
    within one item (never an empty range)."""
    n = max(1, min(shards, len(object_ids)))
    size, extra = divmod(len(object_ids), n)
    ranges, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        ranges.append((object_ids[start], object_ids[end - 1], end - start))
        start = end
    return ranges


def shard_count(requested: int | None, shard_items: int, items: int) -> int:
    """The task's `shards` when given, else ceil(items / EMBTUNE_REINDEX_SHARD_ITEMS)."""
    if requested:
        return max(1, min(int(requested), MAX_SHARDS))
    if shard_items > 0:
        return max(1, min(-(-items // shard_items), MAX_SHARDS))
    return 1


class ReindexShards:
    def __init__(
        self, db: Database, sinks: SinkRegistry, artifacts: ArtifactStore, *, shard_items: int
    ) -> None:
        self.db = db
        self.sinks = sinks
        self.artifacts = artifacts
        self.shard_items = shard_items
        self.tasks = TaskRepository()
        self.items = ItemRepository()
        # wired by the runner: its `handle` (run a shard here) and the queue's send
        self.run_inline: RunInline | None = None
        self.send: Send | None = None
        self._model_lock = threading.Lock()
        self._model: tuple[str, Any] | None = None  # (source, model): shards of one parent

    def count(self, task: Task, items: int) -> int:
        if task.params.get("incremental"):
            return 1  # an incremental run copies from the previous collection: one writer
        return shard_count(task.params.get("shards"), self.shard_items, items)

    # -- the parent --------------------------------------------------------------------------
    def write(
        self,
        task: Task,
        live: LiveRun,
        model: EmbeddingModel,
        sink: VectorSink,
        collection: str,
        object_ids: list[str],
        shards: int,
    ) -> tuple[int, int, dict[str, Any]]:
        """Create, share out and await the shards, then finish the collection: (rows, dim,
        metrics). On any way out the shards still open are canceled; the caller drops the
        collection."""
        ranges = plan_ranges(object_ids, shards)
        live.report(step=0, total_steps=len(object_ids), message="loading model")
        loaded = self._load(model.source)
        # renamed in sentence-transformers 5; the old name warns
        dimension = (getattr(loaded, "get_embedding_dimension", None)
                     or loaded.get_sentence_embedding_dimension)
        dim = int(dimension() or loaded.encode(["x"]).shape[-1])
        sink.create_shared(collection, dim)
        shard_tasks = self._insert(task, model.id, collection, ranges)
        ids = [t.id for t in shard_tasks]
        try:
            for shard in shard_tasks:
                if shard.status is TaskStatus.pending and shard.message_id and self.send:
                    self.send(shard.id, shard.message_id)
            started = time.monotonic()
            done = self._drive(live, ids, len(object_ids))
            receipts = [dict((s.metrics or {})["receipt"]) for s in done]
            rows = sink.finish_shared(collection, receipts)
            expected = sum(int((s.metrics or {})["items"]) for s in done)
            if rows != expected:
                raise SinkError(f"count check failed: collection {collection} holds {rows} "
                                f"vectors, its shards wrote {expected}")
            return rows, dim, _metrics(done, time.monotonic() - started)
        except BaseException:
            self._cancel_open(ids, "its reindex stopped")
            raise
        finally:
            with self._model_lock:
                self._model = None

    def _insert(
        self, task: Task, model_id: str, collection: str, ranges: list[tuple[str, str, int]]
    ) -> list[Task]:
        """The shard tasks of this attempt, in one transaction (a repeat finds them)."""
        out: list[Task] = []
        now = utcnow()
        with self.db.transaction() as session:
            for i, (first, last, items) in enumerate(ranges):
                key = f"{task.id}:a{task.attempts}:shard{i}"
                params = {"parent": task.id, "attempt": task.attempts, "collection": collection,
                          "sink": task.params.get("sink") or {}, "shard": i,
                          "shards": len(ranges), "first": first, "last": last, "items": items}
                created = self.tasks.create(session, new_task_row(
                    TaskKind.reindex_shard, model_id=model_id, idempotency_key=key,
                    fingerprint=key, params=params, metadata=None, now=now,
                ))
                if created is None:
                    found = self.tasks.get_by_key(session, key)
                    assert found is not None
                    created = found[0]
                out.append(created)
        return out

    def _drive(self, live: LiveRun, ids: list[str], total: int) -> list[Task]:
        """Run pending shards here until every shard is done; the done shards."""
        reporter = _Reporter(self, live, ids, total)
        reporter.start()
        try:
            while True:
                if live.stop.is_set():
                    raise TaskStopped("reindex canceled or taken over")
                shards = self._read(ids)
                for shard in shards:
                    if shard.status in FAILED and not self._still_running(live):
                        # the shard was canceled because this run was: not a shard's failure
                        raise TaskStopped("reindex canceled or taken over")
                    if shard.status in FAILED:
                        p = shard.params
                        raise SinkError(
                            f"shard {p['shard'] + 1}/{p['shards']} (task {shard.id}) "
                            f"{shard.status.value}: {shard.detail or 'no detail'}")
                if all(s.status is TaskStatus.done for s in shards):
                    return shards
                pending = [s for s in shards if s.status is TaskStatus.pending and s.message_id]
                if pending and self.run_inline is not None:
                    assert pending[0].message_id is not None
                    self.run_inline(pending[0].id, pending[0].message_id)
                else:
                    live.stop.wait(POLL_S)
        finally:
            reporter.stop()

    def _still_running(self, live: LiveRun) -> bool:
        """Whether this run still owns its task (its monitor may not have noticed yet)."""
        if live.stop.is_set():
            return False
        own = self._read([live.task_id])
        return bool(own) and own[0].status is TaskStatus.processing and (
            own[0].message_id == live.message_id)

    def _read(self, ids: list[str]) -> list[Task]:
        with self.db.read() as session:
            found = [self.tasks.get(session, i) for i in ids]
        return [t for t in found if t is not None]

    def _cancel_open(self, ids: list[str], why: str) -> None:
        try:
            with self.db.transaction() as session:
                for shard_id in ids:
                    self.tasks.apply(session, shard_id, Transition.cancel,
                                     message=f"canceled: {why}",
                                     values={"finished_at": utcnow(), "detail": why})
        except Exception:
            log.exception("could not cancel the shards %s", ids)

    # -- one shard ---------------------------------------------------------------------------
    def run_shard(self, task: Task, live: LiveRun) -> dict[str, Any]:
        """Encode the shard's item range and write it as its part; the shard's metrics."""
        started = time.monotonic()
        p = task.params
        check = self._checker(task, live)
        check()
        try:
            sink = self.sinks.open(p["sink"])
        except Exception as exc:
            why = getattr(exc, "detail", exc)
            raise TaskRefused(f"sink config cannot be used: {why}") from None
        ids, texts = self._range(p["first"], p["last"])
        live.report(step=0, total_steps=len(ids), message="loading model")
        from embtune.services.reindex_run import text_hash
        from embtune.training.catalogue_vectors import VectorStats, encode_blocks
        from embtune.training.precision import resolve_precision

        with self.db.read() as session:
            source = _model_source(session, task.embedding_model_id)
        model = self._load(source)
        precision = resolve_precision("auto", model.device.type).encode
        stats, rows = VectorStats(), 0
        by_id = dict(zip(ids, texts, strict=True))
        part, collection = int(p["shard"]), str(p["collection"])
        try:
            piece = min(1024, max(64, len(ids) // 20))
            for block_ids, vectors in encode_blocks(model, ids, texts, precision=precision,
                                                    stats=stats, check=check,
                                                    encode_items=piece):
                hashes = [text_hash(by_id[i]) for i in block_ids]
                sink.write_part(collection, part, block_ids, vectors, hashes,
                                task.embedding_model_id)
                rows += len(block_ids)
                elapsed = time.monotonic() - started
                live.report(step=rows, total_steps=len(ids),
                            message=f"encoding shard {part + 1}/{p['shards']}",
                            items_per_s=round(rows / elapsed, 2) if elapsed > 0 else None)
            check()
            receipt = sink.finish_part(collection, part)
        except BaseException:
            sink.abort_part(collection, part)
            raise
        finally:
            sink.close()
        from embtune.services.runner import worker_identity

        return {"items": rows, "encoded": stats.encoded, "seconds":
                round(time.monotonic() - started, 3), "encode_s": round(stats.encode_s, 3),
                "precision": precision, "receipt": receipt, "shard": part,
                "worker": worker_identity().rsplit(":", 1)[0]}

    def _checker(self, task: Task, live: LiveRun) -> Callable[[], None]:
        """Stops the shard when its run lost the task, and cancels it when its parent's attempt
        is no longer running (canceled, failed, re-queued after its worker died)."""
        parent_id, attempt = task.params["parent"], task.params["attempt"]

        def check() -> None:
            if live.stop.is_set():
                raise TaskStopped("shard canceled or taken over")
            with self.db.read() as session:
                parent = self.tasks.get(session, parent_id)
            if (parent is not None and parent.status is TaskStatus.processing
                    and parent.attempts == attempt):
                return
            why = f"its reindex {parent_id} attempt {attempt} is no longer running"
            with self.db.transaction() as session:
                self.tasks.apply(session, task.id, Transition.cancel,
                                 message_id=live.message_id, message=f"canceled: {why}",
                                 values={"finished_at": utcnow(), "detail": why})
            raise TaskStopped(why)

        return check

    def _range(self, first: str, last: str) -> tuple[list[str], list[str]]:
        """The catalogue's items from `first` to `last` (object_id order, inclusive)."""
        ids: list[str] = []
        texts: list[str] = []
        with self.db.read() as session:
            for chunk in self.items.all_texts(session):
                for object_id, text in chunk.items():
                    if object_id > last:
                        return ids, texts
                    if object_id >= first:
                        ids.append(object_id)
                        texts.append(text)
        return ids, texts

    def _load(self, source: str) -> Any:
        """The model, loaded once for a parent and the shards it runs here."""
        from embtune.training.models import load_model

        with self._model_lock:
            if self._model is not None and self._model[0] == source:
                return self._model[1]
            try:
                model = load_model(self.artifacts.localize(source), None)
            except ValueError as exc:
                raise TaskRefused(f"model {source!r} cannot be loaded: {exc}") from None
            self._model = (source, model)
            return model


def _model_source(session: Any, model_id: str) -> str:
    from embtune.storage.models_repo import ModelRepository

    model = ModelRepository().get(session, model_id)
    if model is None:
        raise TaskRefused(f"embedding model {model_id} no longer exists")
    return model.source


def _metrics(done: list[Task], wall_s: float) -> dict[str, Any]:
    shard_metrics = [s.metrics or {} for s in done]
    workers = sorted({str(m.get("worker")) for m in shard_metrics if m.get("worker")})
    return {
        "mode": "full", "encoded": sum(int(m.get("encoded", 0)) for m in shard_metrics),
        "reused": 0, "copied": 0, "deleted": 0, "cache": "off",
        "precision": shard_metrics[0].get("precision") if shard_metrics else None,
        "timings_s": {"encode": round(sum(float(m.get("encode_s", 0)) for m in shard_metrics),
                                      3), "shards": round(wall_s, 3)},
        "shards": len(done), "shard_task_ids": [s.id for s in done],
        "shard_items": [int(m.get("items", 0)) for m in shard_metrics],
        "shard_seconds": [float(m.get("seconds", 0)) for m in shard_metrics],
        "shard_attempts": [s.attempts for s in done],
        "workers": len(workers), "worker_ids": workers,
    }


class _Reporter:
    """Aggregates the shards' progress into the parent's (also while the parent's thread runs a
    shard inline), and cancels the shards as soon as the parent's run is stopped."""

    def __init__(self, shards: ReindexShards, live: LiveRun, ids: list[str], total: int) -> None:
        self.shards, self.live, self.ids, self.total = shards, live, ids, total
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"embtune-shards-{live.task_id}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(REPORT_S):
            try:
                if self.live.stop.is_set():
                    self.shards._cancel_open(self.ids, "its reindex was canceled or taken over")
                    return
                self._report(self.shards._read(self.ids))
            except Exception:  # a database blip: the next round tries again
                log.warning("could not aggregate the shards of %s", self.live.task_id,
                            exc_info=True)

    def _report(self, shards: list[Task]) -> None:
        step = sum(int((s.metrics or {}).get("items", 0)) if s.status is TaskStatus.done
                   else s.progress.step for s in shards)
        done = [s for s in shards if s.status is TaskStatus.done]
        elapsed = time.monotonic() - self.started
        rate = step / elapsed if elapsed > 0 else 0.0
        eta = round((self.total - step) / rate, 1) if rate > 0 else None
        self.live.report(
            step=step, total_steps=self.total,
            message=f"{len(done)}/{len(shards)} shards written", eta_s=eta,
            items_per_s=round(rate, 2), shards_done=len(done), shards=len(shards),
            encoded=sum(int((s.metrics or {}).get("encoded", 0)) for s in done),
            reused=0,
        )
