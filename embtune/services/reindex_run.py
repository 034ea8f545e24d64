"""What a reindex task's run does: write a model's catalogue vectors into a new collection of
its sink, count them, and — in the transaction that marks the task done — switch the sink's
alias to it.

The run is safe to repeat. Its collection is named after the task *and the attempt*, so a
re-run after a crash writes beside its dead attempt, never over a collection that may be live;
leftovers of earlier attempts are dropped at the start. Any way out before the switch (error,
cancel, shutdown) drops what this run wrote. The switch happens while the task row is locked in
the done transaction, so a cancel either lands before it (nothing switches) or after (the task
is done); should the commit fail after the sink switched, the switch is undone.

Vectors come from, in order of preference: the previous complete collection of the same model
in this sink for unchanged items (`incremental`), the embedding cache (a task that just tuned
this model encoded this very catalogue for its evaluation), and the model itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from embtune.artifacts import ArtifactStore
from embtune.domain.sinks import CollectionState, SinkCollection
from embtune.domain.tasks import Task, TaskEventKind
from embtune.errors import TaskRefused
from embtune.services.collection_writer import CollectionWriter
from embtune.services.live_run import LiveRun
from embtune.services.reindex_shards import ReindexShards
from embtune.sinks.base import SinkError, VectorSink, collection_name
from embtune.sinks.registry import SinkRegistry
from embtune.storage.aliases_repo import AliasRepository
from embtune.storage.db import Database
from embtune.storage.items_repo import ItemRepository
from embtune.storage.models_repo import ModelRepository
from embtune.storage.sink_collections_repo import SinkCollectionRepository
from embtune.storage.tasks_repo import TaskRepository

log = logging.getLogger(__name__)



def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass
class Written:
    """A collection this run wrote and counted, not yet switched to."""

    task_id: str
    model_id: str
    sink: VectorSink
    collection: str
    rows: int
    dim: int
    metrics: dict[str, Any] = field(default_factory=dict)
    switched_from: str | None = None
    switched: bool = False


class ReindexRun:
    def __init__(
        self,
        db: Database,
        sinks: SinkRegistry,
        artifacts: ArtifactStore,
        *,
        cache_dir: Path | None,
        retention: int,
        shard_items: int = 0,
    ) -> None:
        self.db = db
        self.sinks = sinks
        self.artifacts = artifacts
        self.cache_dir = cache_dir
        self.retention = retention
        self.tasks = TaskRepository()
        self.models = ModelRepository()
        self.items = ItemRepository()
        self.collections = SinkCollectionRepository()
        # a full reindex split into shards that several workers write (`reindex_shards`)
        self.sharded = ReindexShards(db, sinks, artifacts, shard_items=shard_items)

    # -- writing ----------------------------------------------------------------------------
    def write(self, task: Task, live: LiveRun) -> Written:
        started = time.monotonic()
        with self.db.read() as session:
            model = self.models.get(session, task.embedding_model_id)
            catalogue: dict[str, str] = {}
            for chunk in self.items.all_texts(session):
                catalogue.update(chunk)
        if model is None:
            raise TaskRefused(f"embedding model {task.embedding_model_id} no longer exists")
        if not catalogue:
            raise TaskRefused("the catalogue is empty: add items before reindexing")
        try:
            sink = self.sinks.open(task.params.get("sink") or {})
        except Exception as exc:  # a stored config no installed sink accepts any more
            why = getattr(exc, "detail", exc)
            raise TaskRefused(f"sink config cannot be used: {why}") from None
        collection = collection_name(sink.name, model.id, task.id, task.attempts)
        self._sweep_attempts(sink, task.id, keep=collection)
        with self.db.transaction() as session:
            self.collections.start(
                session,
                {
                    "sink_key": sink.key,
                    "collection": collection,
                    "sink_type": sink.config.type,
                    "sink": sink.config.model_dump(mode="json", exclude={"api_key"}),
                    "model_id": model.id,
                    "task_id": task.id,
                },
            )
        shards = self.sharded.count(task, len(catalogue))
        try:
            if shards > 1:  # written by shard tasks (any worker's), counted the same way
                rows, dim, metrics = self.sharded.write(
                    task, live, model, sink, collection, sorted(catalogue), shards
                )
            else:
                writer = CollectionWriter(sink, collection, model.id, live)
                metrics = self._fill(task, live, sink, model.source, model.id, catalogue,
                                     writer)
                rows = sink.finish(collection) if writer.created else 0
                dim = writer.dim
                metrics["timings_s"]["write"] = round(writer.write_s, 3)
            if rows != len(catalogue):
                raise SinkError(
                    f"count check failed: collection {collection} holds {rows} vectors, "
                    f"the catalogue {len(catalogue)} items"
                )
        except BaseException:
            self._drop(sink, collection)
            raise
        metrics.update(
            collection=collection,
            sink={"type": sink.config.type, "name": sink.name, "key": sink.key},
            items=len(catalogue),
            written=rows,
            dim=dim,
        )
        metrics["timings_s"]["total_before_switch"] = round(time.monotonic() - started, 3)
        return Written(task.id, model.id, sink, collection, rows, dim, metrics)

    def _fill(
        self,
        task: Task,
        live: LiveRun,
        sink: VectorSink,
        source: str,
        model_id: str,
        catalogue: dict[str, str],
        writer: CollectionWriter,
    ) -> dict[str, Any]:
        """Write every catalogue item's vector into the new collection; the run's figures."""
        hashes = {object_id: text_hash(text) for object_id, text in catalogue.items()}
        writer.total = len(catalogue)
        metrics: dict[str, Any] = {"mode": "full", "encoded": 0, "reused": 0, "copied": 0,
                                   "deleted": 0, "cache": "off", "timings_s": {}}
        todo = dict(catalogue)
        if task.params.get("incremental"):
            previous = self._previous(sink, model_id)
            if previous is None:
                metrics["note"] = (
                    "incremental: no complete reindex of this model in this sink yet; wrote "
                    "everything"
                )
            else:
                metrics["mode"] = "incremental"
                metrics["previous_collection"] = previous.collection
                live.report(step=0, total_steps=len(catalogue),
                            message="copying unchanged vectors")
                seen: set[str] = set()
                for ids, old_hashes, vectors in sink.records(previous.collection):
                    writer.check()
                    keep = [n for n, (object_id, old) in enumerate(zip(ids, old_hashes,
                                                                          strict=True))
                            if hashes.get(object_id) == old]
                    seen.update(ids)
                    if keep:
                        writer.add([ids[n] for n in keep], vectors[keep],
                                   [old_hashes[n] for n in keep], "copying unchanged vectors",
                                   copied=writer.rows + len(keep))
                        for n in keep:
                            todo.pop(ids[n], None)
                metrics["copied"] = writer.rows
                metrics["deleted"] = len(seen - catalogue.keys())
        if todo:
            stats = self._vectors(live, source, todo, full=len(todo) == len(catalogue),
                                  writer=writer, hashes=hashes)
            metrics.update(encoded=stats.encoded, reused=stats.reused, cache=stats.cache)
            metrics["timings_s"]["encode"] = round(stats.encode_s, 3)
            metrics["precision"] = stats.timings.get("precision")
        return metrics

    def _vectors(
        self,
        live: LiveRun,
        source: str,
        todo: dict[str, str],
        *,
        full: bool,
        writer: CollectionWriter,
        hashes: dict[str, str],
    ) -> Any:
        live.report(step=writer.rows, total_steps=writer.total, message="loading model")
        from embtune.training.catalogue_vectors import (
            VectorStats,
            cache_key,
            catalogue_blocks,
            encode_blocks,
        )
        from embtune.training.embedding_cache import EmbeddingCache
        from embtune.training.models import load_model
        from embtune.training.precision import resolve_precision

        try:
            local = self.artifacts.localize(source)
            model = load_model(local, None)
        except ValueError as exc:
            raise TaskRefused(f"model {source!r} cannot be loaded: {exc}") from None
        precision = resolve_precision("auto", model.device.type).encode
        stats = VectorStats()
        stats.timings["precision"] = precision  # type: ignore[assignment]
        ids, texts = list(todo), list(todo.values())
        # progress (and a cancel) at least every 5 %, and every 1024 items at most
        piece = min(1024, max(64, len(ids) // 20))
        if full:
            from embtune.artifacts import resolve_source

            cache = EmbeddingCache(self.cache_dir) if self.cache_dir is not None else None
            key = cache_key(cache, resolve_source(local), model, precision, texts)
            if cache is not None and key is not None and cache.contains(key):
                phase = "reading cached vectors"
            else:
                phase = "encoding catalogue"
            blocks: Iterator[tuple[list[str], np.ndarray]] = catalogue_blocks(
                model, ids, texts, precision=precision, stats=stats, cache=cache, key=key,
                check=writer.check, encode_items=piece,
            )
        else:
            phase = "encoding added and changed items"
            blocks = encode_blocks(model, ids, texts, precision=precision, stats=stats,
                                   check=writer.check, encode_items=piece)
        for block_ids, vectors in blocks:
            writer.add(block_ids, vectors, [hashes[i] for i in block_ids], phase,
                       encoded=stats.encoded, reused=stats.reused)
        return stats

    def _previous(self, sink: VectorSink, model_id: str) -> SinkCollection | None:
        with self.db.read() as session:
            return self.collections.latest_complete(session, sink.key, model_id)

    # -- switching (inside the runner's done transaction) ------------------------------------
    def switch(self, session: Session, written: Written, alias: str | None = None) -> None:
        """Point the sink's alias at the written collection and record it: the new one live,
        the one it replaces retired. The caller's transaction holds the task row.

        A reindex made for an embtune alias switches only while that alias still points at
        its model: when two moves reindex one sink, the older one finishing last must not put
        the sink back on a model the alias has left (its collection is kept, retired)."""
        sink, started = written.sink, time.monotonic()
        if alias is not None:
            points_at = AliasRepository().model_id_locked(session, alias)
            if points_at is not None and points_at != written.model_id:
                self.collections.set_state(session, sink.key, written.collection,
                                           CollectionState.retired, items=written.rows,
                                           dim=written.dim)
                written.metrics["switched"] = False
                written.metrics["not_switched"] = (
                    f"alias {alias!r} now points at model {points_at}"
                )
                self.tasks.add_event(
                    session, written.task_id, TaskEventKind.switch, None, None,
                    f"sink {sink.name!r} not switched to {written.collection}: alias "
                    f"{alias!r} moved on to model {points_at} meanwhile; kept for rollback",
                )
                return
        written.metrics["switched"] = True
        written.switched_from = sink.switch(written.collection)
        written.switched = True
        written.metrics["timings_s"]["switch"] = round(time.monotonic() - started, 4)
        written.metrics["previous_live"] = written.switched_from
        for other in self.collections.of_sink(session, sink.key,
                                              frozenset({CollectionState.live})):
            if other.collection != written.collection:
                self.collections.set_state(session, sink.key, other.collection,
                                           CollectionState.retired)
        self.collections.set_state(session, sink.key, written.collection, CollectionState.live,
                                   items=written.rows, dim=written.dim)
        self.tasks.add_event(
            session, written.task_id, TaskEventKind.switch, None, None,
            f"sink {sink.name!r} ({sink.config.type}) now serves {written.collection} "
            f"({written.rows} vectors); before: {written.switched_from or 'nothing'}",
        )

    def undo(self, written: Written) -> None:
        """The done transaction did not commit: put the alias back, drop the collection."""
        if written.switched and written.switched_from:
            try:
                written.sink.switch(written.switched_from)
            except Exception:
                log.exception("could not switch sink %s back to %s", written.sink.key,
                              written.switched_from)
        if not written.switched or written.switched_from:
            self._drop(written.sink, written.collection)

    def retire(self, written: Written) -> None:
        """After the switch: drop this task's other attempts and the complete collections past
        the retention (best effort; the next reindex tries again)."""
        try:
            self._sweep_attempts(written.sink, written.task_id, keep=written.collection)
            with self.db.read() as session:
                kept = self.collections.of_sink(
                    session, written.sink.key, frozenset({CollectionState.retired})
                )
            for old in kept[self.retention:]:
                self._drop(written.sink, old.collection)
        except Exception:
            log.exception("could not apply the retention of sink %s", written.sink.key)
        finally:
            written.sink.close()

    # -- clean-up ----------------------------------------------------------------------------
    def _sweep_attempts(self, sink: VectorSink, task_id: str, keep: str) -> None:
        """Drop what earlier attempts of this task left (unless the alias serves it)."""
        with self.db.read() as session:
            leftovers = [c for c in self.collections.of_task(session, task_id)
                         if c.sink_key == sink.key and c.collection != keep
                         and c.state is CollectionState.writing]
        if not leftovers:
            return
        live = sink.live()
        for leftover in leftovers:
            if leftover.collection != live:
                self._drop(sink, leftover.collection)

    def _drop(self, sink: VectorSink, collection: str) -> None:
        try:
            sink.drop(collection)
        except Exception:
            log.exception("could not drop collection %s of sink %s", collection, sink.key)
            return
        with contextlib.suppress(Exception), self.db.transaction() as session:
            self.collections.set_state(session, sink.key, collection, CollectionState.dropped)
