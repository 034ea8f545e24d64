"""Reindex tasks run for real: the shared lifecycle on every backend, cache reuse, incremental
adds/changes/deletes, a cancel mid-write, a dead worker, an unreachable sink.

Driven through the runtime's services (the HTTP layer has its own tests); vectors are written
by the real Parquet and Qdrant (local mode) sinks and read back from them.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embtune.domain.sinks import CollectionState
from embtune.domain.tasks import Task, TaskEventKind, TaskKind, TaskStatus
from embtune.runtime import Runtime
from embtune.storage.sink_collections_repo import SinkCollectionRepository
from tests.conftest import make_settings, wait_until
from tests.support.backends import Backend
from tests.support.processes import spawn

WORDS = ("wool", "cotton", "red", "green", "blue", "jumper", "scarf", "boots", "cheap", "warm",
         "linen", "shirt", "denim", "jacket", "silk", "tie", "leather", "belt", "summer", "coat")


def catalogue(n: int, start: int = 0) -> list[dict[str, str]]:
    """Short distinct product texts: cheap to encode."""
    return [
        {"object_id": f"item-{i:05d}",
         "text": f"{WORDS[i % 20]} {WORDS[(i // 20) % 20]} {WORDS[(i * 7) % 20]} number {i}"}
        for i in range(start, start + n)
    ]


def register(rt: Runtime) -> str:
    return rt.models.register(
        name="mini", plugin_name="sleepy", source="builtin:all-MiniLM-L6-v2"
    ).id


def reindex(rt: Runtime, model_id: str, sink: dict[str, Any], **body: Any) -> Task:
    task, created = rt.reindex.create(model_id=model_id, sink=sink, **body)
    assert created and task.kind is TaskKind.reindex
    return task


def finished(rt: Runtime, task_id: str, timeout: float = 120.0) -> Task:
    task = wait_until(
        lambda: (t := rt.tasks.get(task_id, TaskKind.reindex)).status.is_terminal and t,
        timeout,
        0.1,
    )
    return task


def sink_rows(rt: Runtime, sink: dict[str, Any], collection: str) -> dict[str, np.ndarray]:
    opened = rt.sinks.open(sink)
    try:
        return {
            object_id: vector
            for ids, _, vectors in opened.records(collection)
            for object_id, vector in zip(ids, vectors, strict=True)
        }
    finally:
        opened.close()


def test_reindex_lifecycle_reuse_and_switch_on_every_backend(runtime: Runtime) -> None:
    rt = runtime
    model_id = register(rt)
    rt.catalogue.upsert_items(catalogue(40))
    sink = {"type": "parquet"}

    first = finished(rt, reindex(rt, model_id, sink).id)
    assert first.status is TaskStatus.done, first.detail
    m = first.metrics or {}
    assert (m["mode"], m["items"], m["encoded"], m["reused"], m["written"]) == (
        "full", 40, 40, 0, 40)
    assert m["cache"] == "stored" and m["previous_live"] is None
    # the progress said where the vectors came from while they were written
    assert (first.progress.step, first.progress.extra.get("encoded")) == (40, 40)
    kinds = [e.kind for e in rt.tasks.events(first.id, TaskKind.reindex)]
    assert TaskEventKind.switch in kinds and kinds[-1] is TaskEventKind.transition

    # the same model again: every vector comes from the embedding cache, nothing is encoded
    second = finished(rt, reindex(rt, model_id, sink).id)
    assert second.status is TaskStatus.done, second.detail
    m2 = second.metrics or {}
    assert (m2["encoded"], m2["reused"], m2["cache"]) == (0, 40, "hit")
    assert second.progress.extra.get("reused") == 40
    assert m2["previous_live"] == m["collection"] != m2["collection"]
    opened = rt.sinks.open(sink)
    assert opened.live() == m2["collection"]
    with rt.db.read() as session:
        repo = SinkCollectionRepository()
        states = {c.collection: c.state for c in repo.of_sink(session, opened.key)}
    assert states == {m["collection"]: CollectionState.retired,
                      m2["collection"]: CollectionState.live}
    old, new = sink_rows(rt, sink, m["collection"]), sink_rows(rt, sink, m2["collection"])
    assert old.keys() == new.keys() == {i["object_id"] for i in catalogue(40)}
    assert all(np.array_equal(old[k], new[k]) for k in old)  # bit-identical: the cache

    # a reindex task is not a fine-tuning task, and lists apart from them
    assert rt.tasks.page(offset=0, limit=10)[1] == 0
    assert rt.tasks.page(offset=0, limit=10, kind=TaskKind.reindex)[1] == 2


@pytest.mark.backends("sqlite-embedded")
def test_incremental_reindex_writes_adds_and_changes_and_drops_deletes(
    runtime: Runtime,
) -> None:
    rt = runtime
    model_id = register(rt)
    items = catalogue(30)
    rt.catalogue.upsert_items(items)
    sink = {"type": "qdrant", "name": "shop"}
    full = finished(rt, reindex(rt, model_id, sink).id)
    assert full.status is TaskStatus.done, full.detail
    before = sink_rows(rt, sink, full.metrics["collection"])

    rt.catalogue.upsert_items([{"object_id": "item-00003", "text": "silk tie for a wedding"},
                               {"object_id": "item-00004", "text": "leather boots, brown"},
                               *catalogue(2, start=100)])
    assert rt.catalogue.delete_items(["item-00010", "item-00011", "no-such-item"]) == 2

    inc = finished(rt, reindex(rt, model_id, sink, incremental=True).id)
    assert inc.status is TaskStatus.done, inc.detail
    m = inc.metrics or {}
    assert (m["mode"], m["encoded"], m["copied"], m["deleted"], m["items"]) == (
        "incremental", 4, 26, 2, 30)
    assert m["previous_collection"] == full.metrics["collection"]
    after = sink_rows(rt, sink, m["collection"])
    assert "item-00010" not in after and {"item-00100", "item-00101"} <= after.keys()
    assert not np.allclose(after["item-00003"], before["item-00003"])
    assert np.array_equal(after["item-00020"], before["item-00020"])  # copied, not re-encoded
    # searching the sink's alias finds the changed text's item
    result = rt.reindex.search(query="silk tie for a wedding", k=3, model_id=model_id)
    assert result.hits[0].object_id == "item-00003"
    assert result.collection == m["collection"]


@pytest.mark.backends("sqlite-embedded")
def test_incremental_without_a_previous_reindex_writes_everything(runtime: Runtime) -> None:
    rt = runtime
    model_id = register(rt)
    rt.catalogue.upsert_items(catalogue(12))
    task = finished(rt, reindex(rt, model_id, {"type": "parquet"}, incremental=True).id)
    assert task.status is TaskStatus.done, task.detail
    assert task.metrics["mode"] == "full" and "no complete reindex" in task.metrics["note"]


@pytest.mark.backends("sqlite-embedded")
def test_cancel_mid_write_leaves_the_alias_and_removes_the_new_collection(
    runtime: Runtime,
) -> None:
    rt = runtime
    model_id = register(rt)
    rt.catalogue.upsert_items(catalogue(30))
    sink = {"type": "parquet", "name": "cat"}
    live = finished(rt, reindex(rt, model_id, sink).id).metrics["collection"]
    rt.catalogue.upsert_items(catalogue(2000, start=1000))
    task = reindex(rt, model_id, sink)
    wait_until(
        lambda: rt.tasks.get(task.id, TaskKind.reindex).progress.step > 0, 120, 0.05
    )
    rt.tasks.cancel(task.id, TaskKind.reindex)
    opened = rt.sinks.open(sink)

    def cleaned() -> bool:
        with rt.db.read() as session:
            rows = SinkCollectionRepository().of_task(session, task.id)
        return bool(rows) and all(r.state is CollectionState.dropped for r in rows)

    wait_until(cleaned, 60, 0.1)
    assert opened.live() == live
    assert opened.collections() == [live]
    assert rt.tasks.get(task.id, TaskKind.reindex).status is TaskStatus.canceled


@pytest.mark.backends("sqlite-embedded")
def test_unreachable_sink_fails_the_task_with_a_clear_detail_and_switches_nothing(
    runtime: Runtime,
) -> None:
    rt = runtime
    model_id = register(rt)
    rt.catalogue.upsert_items(catalogue(5))
    sink = {"type": "qdrant", "url": "http://127.0.0.1:9", "timeout_s": 1}
    task = finished(rt, reindex(rt, model_id, sink).id)
    assert task.status is TaskStatus.failed
    assert "127.0.0.1:9" in (task.detail or "") and "unreachable" in (task.detail or "")
    with rt.db.read() as session:
        rows = SinkCollectionRepository().of_task(session, task.id)
    assert all(r.state is not CollectionState.live for r in rows)


@pytest.mark.backends("sqlite-embedded")
def test_empty_catalogue_is_refused(runtime: Runtime) -> None:
    rt = runtime
    task = finished(rt, reindex(rt, register(rt), {"type": "parquet"}).id)
    assert task.status is TaskStatus.refused and "catalogue is empty" in (task.detail or "")


@pytest.mark.backends("postgres-redis")
def test_killed_worker_mid_reindex_is_requeued_and_completes_without_duplicates(
    backend: Backend, tmp_path: Path, processes: list[subprocess.Popen]
) -> None:
    api = Runtime.build(make_settings(backend, tmp_path / "api", heartbeat_timeout_s=2.0))
    try:
        model_id = register(api)
        api.catalogue.upsert_items(catalogue(1500))
        shared = {"type": "parquet", "url": str(tmp_path / "vectors")}
        processes.append(spawn(backend, tmp_path / "w1", "worker"))
        task = reindex(api, model_id, shared)
        wait_until(
            lambda: api.tasks.get(task.id, TaskKind.reindex).progress.step > 0, 120, 0.05
        )
        processes[0].send_signal(signal.SIGKILL)
        processes[0].wait(timeout=10)
        processes.append(spawn(backend, tmp_path / "w2", "worker"))
        done = finished(api, task.id, timeout=240)
        assert done.status is TaskStatus.done, done.detail
        assert done.attempts == 2 and done.metrics["collection"].endswith("-a2")
        rows = sink_rows(api, shared, done.metrics["collection"])
        assert len(rows) == 1500  # every item once: no duplicates, nothing missing
        opened = api.sinks.open(shared)
        assert opened.live() == done.metrics["collection"]
        assert opened.collections() == [done.metrics["collection"]]  # the dead attempt swept
    finally:
        api.close()


@pytest.mark.backends("sqlite-embedded")
def test_an_older_reindex_of_an_alias_finishing_last_does_not_switch_its_sink_back(
    backend: Backend, tmp_path: Path
) -> None:
    rt = Runtime.build(make_settings(backend, tmp_path / "data"))
    try:
        first, second = register(rt), register(rt)
        rt.catalogue.upsert_items(catalogue(10))
        sink = {"type": "parquet", "name": "shop"}
        # no worker yet: both moves' reindexes wait, and the older one runs first
        older = rt.aliases.set("production", first, "test", sink=sink).serving.reindex_task_id
        newer = rt.aliases.set("production", second, "test").serving.reindex_task_id
        assert older and newer and older != newer
        rt.start_worker()
        done = [finished(rt, task_id) for task_id in (older, newer)]
        assert [t.status for t in done] == [TaskStatus.done, TaskStatus.done]
        assert done[0].metrics["switched"] is False
        assert "moved on" in rt.tasks.events(older, TaskKind.reindex)[-2].message
        assert done[1].metrics["switched"] is True
        assert rt.sinks.open(sink).live() == done[1].metrics["collection"]
        assert rt.aliases.get("production").serving.state == "live"
    finally:
        rt.close()


@pytest.mark.backends("sqlite-embedded")
def test_search_by_alias_reads_the_old_collection_until_the_switch(
    backend: Backend, tmp_path: Path
) -> None:
    """Runs are driven one at a time through the runner's own entry point, so the moment
    between a move and its switch can be looked at."""
    rt = Runtime.build(make_settings(backend, tmp_path / "data"))
    try:
        first, second = register(rt), register(rt)
        rt.catalogue.upsert_items(catalogue(12))
        sink = {"type": "qdrant", "name": "shop"}

        def run(task_id: str | None) -> Task:
            assert task_id is not None
            task = rt.tasks.get(task_id, TaskKind.reindex)
            assert task.message_id is not None
            rt.runner.handle(task.id, task.message_id)
            return rt.tasks.get(task_id, TaskKind.reindex)

        query = catalogue(12)[5]["text"]
        t1 = run(rt.aliases.set("production", first, "test", sink=sink).serving.reindex_task_id)
        before = rt.reindex.search(query=query, k=3, alias="production")
        assert (before.model_id, before.collection, before.live) == (
            first, t1.metrics["collection"], True)
        assert before.hits[0].object_id == "item-00005"

        moved = rt.aliases.set("production", second, "test")
        assert moved.serving.state == "reindexing"
        during = rt.reindex.search(query=query, k=3, alias="production")
        assert (during.model_id, during.collection, during.live) == (
            first, t1.metrics["collection"], False)  # the old index, with its own model
        assert during.alias_model_id == second

        t2 = run(moved.serving.reindex_task_id)
        after = rt.reindex.search(query=query, k=3, alias="production")
        assert (after.model_id, after.collection, after.live) == (
            second, t2.metrics["collection"], True)
        assert after.hits[0].object_id == "item-00005"
    finally:
        rt.close()
