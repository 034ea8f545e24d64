"""Sharded reindex runs for real: shard tasks written by the real Parquet and Qdrant sinks, equal
to an unsharded run's vectors, aggregated progress, a cancel of the parent, recovery of a stale
shard, and two `embtune worker` processes sharing the shards (one of them killed mid-shard).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from dramatiq.middleware import Shutdown

from embtune.domain.sinks import CollectionState
from embtune.domain.tasks import Task, TaskKind, TaskStatus
from embtune.errors import InvalidParams
from embtune.runtime import Runtime
from embtune.services.reindex_shards import plan_ranges, shard_count
from embtune.storage.db import utcnow
from embtune.storage.sink_collections_repo import SinkCollectionRepository
from tests.conftest import make_settings, wait_until
from tests.integration.test_reindex_run import (
    WORDS,
    catalogue,
    finished,
    register,
    sink_rows,
)
from tests.support.backends import Backend
from tests.support.processes import spawn


def shard_tasks(rt: Runtime, parent: Task) -> list[Task]:
    ids = (parent.metrics or {}).get("shard_task_ids") or []
    return [rt.tasks.get(i, TaskKind.reindex_shard) for i in ids]


def shards_of(rt: Runtime, parent_id: str) -> list[Task]:
    """The shard tasks of a parent's first attempt, found by their idempotency keys."""
    found = []
    with rt.db.read() as session:
        for i in range(256):
            got = rt.tasks.tasks.get_by_key(session, f"{parent_id}:a1:shard{i}")
            if got is None:
                break
            found.append(got[0])
    return found


def test_ranges_cover_every_item_once_in_equal_parts() -> None:
    ids = [f"i{n:03d}" for n in range(10)]
    assert plan_ranges(ids, 3) == [("i000", "i003", 4), ("i004", "i006", 3), ("i007", "i009", 3)]
    assert plan_ranges(ids[:2], 5) == [("i000", "i000", 1), ("i001", "i001", 1)]
    assert (shard_count(None, 0, 10), shard_count(3, 100, 10), shard_count(None, 4, 10)) == (
        1, 3, 3)


def test_parquet_parts_count_only_receipted_runs_and_refuse_a_changed_file(
    tmp_path: Path,
) -> None:
    from embtune.sinks.base import SinkContext, SinkError
    from embtune.sinks.parquet import ParquetSink

    def sink() -> ParquetSink:  # one instance per writer, as in separate worker processes
        config = ParquetSink.Config(type="parquet", url=str(tmp_path / "v"))
        return ParquetSink(config, SinkContext(data_dir=tmp_path))

    def vectors(n: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).random((n, 4), dtype=np.float32)

    parent = sink()
    parent.create_shared("c", 4)
    dead, retry, other = sink(), sink(), sink()
    dead.write_part("c", 0, ["a", "b"], vectors(2, 1), ["h", "h"], "m")  # dies unfinished
    retry.write_part("c", 0, ["a", "b"], vectors(2, 2), ["h", "h"], "m")
    other.write_part("c", 1, ["c"], vectors(1, 3), ["h"], "m")
    receipts = [retry.finish_part("c", 0), other.finish_part("c", 1)]
    assert [r["rows"] for r in receipts] == [2, 1]
    assert parent.finish_shared("c", list(reversed(receipts))) == 3
    ids, _, got = zip(*parent.records("c"), strict=True)
    assert ids[0] == ["a", "b", "c"]  # in part order
    assert np.array_equal(got[0][:2], vectors(2, 2))  # the receipted run's rows, once
    assert not [n for n in os.listdir(tmp_path / "v" / "catalogue" / "c") if "part-" in n]

    parent.create_shared("d", 4)
    writer = sink()
    writer.write_part("d", 0, ["a"], vectors(1, 4), ["h"], "m")
    receipt = writer.finish_part("d", 0)
    part = tmp_path / "v" / "catalogue" / "d" / receipt["file"]
    part.write_bytes(part.read_bytes()[:-1] + b"X")
    with pytest.raises(SinkError, match="is not the part its shard wrote"):
        parent.finish_shared("d", [receipt])
    parent.drop("d")
    with pytest.raises(SinkError, match="dropped"):  # a late shard never recreates it
        sink().write_part("d", 1, ["b"], vectors(1, 5), ["h"], "m")


@pytest.mark.backends("sqlite-embedded")
def test_shards_are_validated_naming_the_field(runtime: Runtime) -> None:
    model_id = register(runtime)
    for shards, incremental in ((0, False), (257, False), (3, True)):
        with pytest.raises(InvalidParams) as raised:
            runtime.reindex.create(model_id=model_id, sink={"type": "parquet"}, shards=shards,
                                   incremental=incremental)
        assert raised.value.errors[0]["loc"] == ["body", "shards"]
    assert runtime.reindex.page(offset=0, limit=10)[1] == 0


@pytest.mark.backends("sqlite-embedded")
def test_sharded_parquet_reindex_equals_an_unsharded_one(runtime: Runtime) -> None:
    rt = runtime
    model_id = register(rt)
    rt.catalogue.upsert_items(catalogue(90))
    single = finished(rt, rt.reindex.create(model_id=model_id, sink={"type": "parquet",
                                                                        "name": "one"})[0].id)
    assert single.status is TaskStatus.done, single.detail
    sink = {"type": "parquet", "name": "three"}
    task, _ = rt.reindex.create(model_id=model_id, sink=sink, shards=3)
    assert task.params["shards"] == 3
    done = finished(rt, task.id)
    assert done.status is TaskStatus.done, done.detail
    m = done.metrics or {}
    assert (m["shards"], m["items"], m["written"], m["encoded"], m["workers"]) == (3, 90, 90, 90, 1)
    assert m["shard_items"] == [30, 30, 30] and len(m["shard_task_ids"]) == 3
    shards = shard_tasks(rt, done)
    assert all(s.status is TaskStatus.done and s.params["parent"] == done.id for s in shards)
    assert done.progress.step == done.progress.total_steps == 90  # aggregated to the end
    # shards are tasks of their own kind: listed nowhere
    assert rt.reindex.page(offset=0, limit=10)[1] == 2
    one = sink_rows(rt, {"type": "parquet", "name": "one"}, single.metrics["collection"])
    three = sink_rows(rt, sink, m["collection"])
    assert one.keys() == three.keys() == {i["object_id"] for i in catalogue(90)}
    # same model, same precision: the same vectors, although each shard batches its own
    # range (padding is masked out; the kernels' rounding may differ by batch shape, which
    # in bf16 moves a component by up to ~1e-3)
    cosines = [float(one[k] @ three[k] / np.linalg.norm(one[k]) / np.linalg.norm(three[k]))
               for k in one]
    assert min(cosines) > 0.9999, min(cosines)
    opened = rt.sinks.open(sink)
    assert opened.live() == m["collection"]
    assert opened.count(m["collection"]) == 90
    assert not [p for p in os.listdir(Path(rt.settings.data_dir) / "vectors" / "three"
                                      / m["collection"]) if p.startswith("part-")]


@pytest.mark.backends("sqlite-embedded")
def test_sharded_qdrant_reindex_completes_and_searches(runtime: Runtime) -> None:
    rt = runtime
    model_id = register(rt)
    rt.catalogue.upsert_items(catalogue(45))
    rt.catalogue.upsert_items([{"object_id": "item-00007", "text": "silk tie for a wedding"}])
    sink = {"type": "qdrant", "name": "shop"}
    done = finished(rt, rt.reindex.create(model_id=model_id, sink=sink, shards=3)[0].id)
    assert done.status is TaskStatus.done, done.detail
    m = done.metrics or {}
    assert (m["shards"], m["written"]) == (3, 45)
    assert len(sink_rows(rt, sink, m["collection"])) == 45
    hits = rt.reindex.search(query="silk tie for a wedding", k=2, model_id=model_id).hits
    assert hits[0].object_id == "item-00007"


@pytest.mark.backends("sqlite-embedded")
def test_canceling_the_parent_cancels_its_shards_and_drops_the_collection(
    runtime: Runtime,
) -> None:
    rt = runtime
    model_id = register(rt)
    rt.catalogue.upsert_items(catalogue(20))
    sink = {"type": "parquet", "name": "cat"}
    live = finished(rt, rt.reindex.create(model_id=model_id, sink=sink)[0].id)
    rt.catalogue.upsert_items(catalogue(2400, start=1000))
    task, _ = rt.reindex.create(model_id=model_id, sink=sink, shards=4)
    wait_until(lambda: rt.tasks.get(task.id, TaskKind.reindex).progress.step > 0, 120, 0.05)
    rt.tasks.cancel(task.id, TaskKind.reindex)

    def cleaned() -> bool:
        with rt.db.read() as session:
            rows = SinkCollectionRepository().of_task(session, task.id)
        shards = shards_of(rt, task.id)
        return (bool(rows) and all(r.state is CollectionState.dropped for r in rows)
                and len(shards) == 4 and all(s.status.is_terminal for s in shards))

    wait_until(cleaned, 60, 0.1)
    shards = shards_of(rt, task.id)
    # a shard that finished before the cancel reached it stays done (its part is dropped with
    # the collection); every other one is canceled
    statuses = [s.status for s in shards]
    assert set(statuses) <= {TaskStatus.done, TaskStatus.canceled}, statuses
    assert TaskStatus.canceled in statuses
    opened = rt.sinks.open(sink)
    assert opened.live() == live.metrics["collection"]
    assert opened.collections() == [live.metrics["collection"]]
    assert rt.tasks.get(task.id, TaskKind.reindex).status is TaskStatus.canceled


@pytest.mark.backends("sqlite-embedded")
def test_shutdown_during_an_inline_shard_hands_back_the_parent_too(runtime: Runtime) -> None:
    """Dramatiq's Shutdown lands in the worker thread, i.e. in the shard the parent runs
    inline: the shard is handed back, and so is the parent, whose next attempt writes anew."""
    rt = runtime
    model_id = register(rt)
    rt.catalogue.upsert_items(catalogue(2400))
    sink = {"type": "parquet", "name": "down"}
    task, _ = rt.reindex.create(model_id=model_id, sink=sink, shards=4)

    def inline_shard() -> int | None:
        parent = rt.tasks.get(task.id, TaskKind.reindex)
        for shard in shards_of(rt, task.id):
            if (shard.status is TaskStatus.processing and parent.worker_id
                    and shard.worker_id == parent.worker_id and shard.progress.step > 0):
                return int(parent.worker_id.rsplit(":", 1)[1])
        return None

    thread = wait_until(inline_shard, 120, 0.02)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(Shutdown))
    done = finished(rt, task.id)
    assert done.status is TaskStatus.done, done.detail
    assert done.attempts == 2 and done.metrics["collection"].endswith("-a2")
    assert all(s.status.is_terminal for s in shards_of(rt, task.id))  # attempt 1's shards
    assert rt.sinks.open(sink).collections() == [done.metrics["collection"]]


@pytest.mark.backends("sqlite-embedded")
def test_recovery_requeues_a_stale_shard_like_any_task(tmp_path: Path, backend: Backend) -> None:
    rt = Runtime.build(make_settings(backend, tmp_path / "data", heartbeat_timeout_s=1.0))
    try:
        model_id = register(rt)
        with rt.db.transaction() as session:
            shard = rt.tasks.tasks.create(session, {
                "id": "s" * 32, "kind": TaskKind.reindex_shard.value,
                "embedding_model_id": model_id, "params": {"parent": "p"}, "meta": {},
                "request_hash": "h",
                "message_id": "m1", "attempts": 0, "created_at": utcnow(),
                "updated_at": utcnow()})
            assert shard is not None
            rt.tasks.tasks.claim(session, shard.id, "m1", "dead:1:1",
                                 utcnow() - timedelta(seconds=30))
        rt.recovery.run_once()
        again = rt.tasks.get(shard.id, TaskKind.reindex_shard)
        assert again.status is TaskStatus.pending and again.message_id != "m1"
    finally:
        rt.close()


def _pid(worker_id: str | None) -> int | None:
    return int(worker_id.split(":")[1]) if worker_id else None


@pytest.mark.backends("postgres-redis")
def test_two_workers_share_the_shards_and_a_killed_ones_shard_is_requeued(
    backend: Backend, tmp_path: Path, processes: list[subprocess.Popen]
) -> None:
    api = Runtime.build(make_settings(backend, tmp_path / "api", heartbeat_timeout_s=2.0))
    try:
        model_id = register(api)
        # enough shards, each slow enough (longer texts) that the second worker, slow to
        # start (it loads the model at its first shard), still finds some after its first
        # however fast the machine: a shard of short texts took 0.4 s on an idle one
        padding = " ".join(WORDS)
        api.catalogue.upsert_items(
            [{**item, "text": f"{item['text']} {padding}"} for item in catalogue(4000)]
        )
        shared = {"type": "parquet", "url": str(tmp_path / "vectors")}
        threads = {"OMP_NUM_THREADS": "1", "EMBTUNE_WORKER_THREADS": "1"}
        for name in ("w1", "w2"):
            processes.append(spawn(backend, tmp_path / name, "worker", **threads))
        by_pid = {p.pid: p for p in processes}
        task, _ = api.reindex.create(model_id=model_id, sink=shared, shards=16)

        def victim() -> int | None:
            """The worker that does not run the parent, once it wrote a shard and is in the
            middle of another."""
            parent = api.tasks.get(task.id, TaskKind.reindex)
            shards = shards_of(api, task.id)
            for shard in shards:
                pid = _pid(shard.worker_id)
                wrote = any(s.status is TaskStatus.done and _pid(s.worker_id) == pid
                            for s in shards)
                if (shard.status is TaskStatus.processing and shard.progress.step > 0 and wrote
                        and pid != _pid(parent.worker_id) and pid in by_pid):
                    return pid
            return None

        try:
            pid = wait_until(victim, 120, 0.05)
        except AssertionError:
            parent = api.tasks.get(task.id, TaskKind.reindex)
            raise AssertionError(f"{parent.status} {parent.worker_id} {parent.metrics} "
                                 f"{parent.detail} {list(by_pid)} " + repr(
                                     [(s.status, s.worker_id, s.attempts)
                                      for s in shards_of(api, task.id)])) from None
        by_pid[pid].send_signal(signal.SIGKILL)
        by_pid[pid].wait(timeout=10)
        done = finished(api, task.id, timeout=240)
        assert done.status is TaskStatus.done, done.detail
        m = done.metrics or {}
        # both workers wrote shards; the killed one's unfinished shard ran again
        assert m["workers"] == 2 and any(w.endswith(f":{pid}") for w in m["worker_ids"])
        assert max(m["shard_attempts"]) == 2
        rows = sink_rows(api, shared, m["collection"])
        assert len(rows) == 4000  # every item once: no duplicates, nothing missing
        assert api.sinks.open(shared).live() == m["collection"]
    finally:
        api.close()
