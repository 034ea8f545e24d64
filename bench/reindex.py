"""Reindex on a real catalogue: full, after a task (cache reuse), incremental, and the switch.

Through the running service (embedded defaults, in this process) on SciFact's catalogue (5,183
documents, from ../shared): prints

- a full reindex into each sink (Qdrant local mode, Parquet): encode time, write time, items/s
  (the embedding cache is emptied before each, so both encode);
- a fine-tuning task, then a reindex of its tuned model: its catalogue vectors are read from the
  cache the task's evaluation filled (target: at most 0.1x the full reindex's time);
- an incremental reindex after 1 % of the items changed (target: at most 0.05x the full one);
- the alias switch time, and searches served through the sink's alias while reindexes switch
  it (target: no failed search).

Asserts nothing; the README quotes the figures with the date and the machine.

    .venv/bin/python bench/reindex.py [--beir DIR] [--out bench/out/reindex.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from embtune.client import Client  # noqa: E402
from embtune.config import Settings  # noqa: E402
from embtune.demo.beir import iter_corpus  # noqa: E402
from embtune.demo.click_model import PositionBiasedClickModel  # noqa: E402
from embtune.demo.run import BASE_SOURCE  # noqa: E402
from embtune.demo.server import free_port, start_server  # noqa: E402
from embtune.demo.simulate import simulate_beir  # noqa: E402
from embtune.sinks.base import SinkContext  # noqa: E402
from embtune.sinks.registry import SinkRegistry  # noqa: E402

QDRANT = {"type": "qdrant", "name": "scifact"}
PARQUET = {"type": "parquet", "name": "scifact"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def reindex(api: Client, model_id: str, sink: dict[str, Any], **body: Any) -> dict[str, Any]:
    started = time.monotonic()
    task = api.create_reindex_task(model_id, sink=sink, **body)
    last = ""
    for current in api.follow_reindex(task.id, interval_s=0.2):
        if current.progress.message != last:
            last = current.progress.message
            log(f"  reindex {task.id[-6:]}: {current.status.value} {last}")
        final = current
    if final.status.value != "done":
        raise RuntimeError(f"reindex {task.id} ended {final.status.value}: {final.detail}")
    metrics = dict(final.metrics or {})
    metrics["wall_s"] = round(time.monotonic() - started, 2)
    timings = metrics.get("timings_s", {})
    log(f"  {metrics['mode']} into {sink['type']}: {metrics['wall_s']} s wall, encoded "
        f"{metrics['encoded']}, reused {metrics['reused']}, copied {metrics['copied']}, "
        f"encode {timings.get('encode', 0)} s, write {timings.get('write')} s, "
        f"switch {timings.get('switch')} s")
    return metrics


class AliasProbe:
    """Searches the sink's alias in a loop (the way a search service would) and counts
    failures: run while reindexes switch the alias."""

    def __init__(self, registry: SinkRegistry, sink: dict[str, Any], dim: int) -> None:
        self.sink = registry.open(sink)
        self.vector = np.ones(dim, dtype=np.float32) / np.sqrt(dim)
        self.ok = 0
        self.failed: list[str] = []
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-alias-probe")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                hits = self.sink.search(self.vector, 10)
                if len(hits) != 10:
                    raise RuntimeError(f"{len(hits)} hits")
                self.ok += 1
                live = self.sink.live()
                if live:
                    self.seen.add(live)
            except Exception as exc:
                self.failed.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.01)

    def __enter__(self) -> AliasProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beir", type=Path, default=ROOT.parent / "shared/data/scifact")
    parser.add_argument("--changed-fraction", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    from embtune.runtime import prepare_task_process

    with tempfile.TemporaryDirectory(prefix="embtune-reindex-") as tmp:
        data_dir = Path(tmp) / "data"
        settings = Settings(data_dir=data_dir, broker_url="embedded")
        prepare_task_process(settings)
        cache = data_dir.resolve() / "cache" / "embeddings"
        server = start_server(settings, "127.0.0.1", free_port())
        registry = SinkRegistry.discover(SinkContext(data_dir=data_dir.resolve()))
        try:
            with Client(server.url, timeout=300) as api:
                model = api.register_model("all-MiniLM-L6-v2", BASE_SOURCE)
                items = list(iter_corpus(args.beir / "corpus.jsonl"))
                for start in range(0, len(items), 1000):
                    api.upsert_items(items[start : start + 1000])
                log(f"catalogue: {len(items)} items")

                for name, sink in (("qdrant", QDRANT), ("parquet", PARQUET)):
                    shutil.rmtree(cache, ignore_errors=True)  # an honest full encode
                    log(f"full reindex into {name}")
                    results[f"full_{name}"] = reindex(api, model.id, sink)

                log("simulating sessions for a small fine-tuning task")
                simulate_beir(
                    api, args.beir, split="train", model_source=BASE_SOURCE,
                    click_model=PositionBiasedClickModel(seed=7), sessions_per_query=2,
                    max_seq_length=64, limit=150, on_progress=log,
                )
                # evaluated at the model's own length (256), as a full reindex encodes
                task = api.create_task(model.id, params={
                    "epochs": 1, "train_max_seq_length": 64, "max_seq_length": 256,
                    "learning_rate": 3e-5})
                task_started = time.monotonic()
                for current in api.follow(task.id, interval_s=1):
                    log(f"  task: {current.status.value} {current.progress.message}")
                    final = current
                if final.status.value != "done":
                    raise RuntimeError(f"task ended {final.status.value}: {final.detail}")
                results["task_s"] = round(time.monotonic() - task_started, 1)
                tuned = final.result_model_id
                assert tuned is not None

                log("reindex of the tuned model right after its task (cache reuse)")
                results["after_task_parquet"] = reindex(api, tuned, PARQUET)
                dim = results["full_qdrant"]["dim"]
                changed = items[: max(1, int(len(items) * args.changed_fraction))]
                with AliasProbe(registry, QDRANT, dim) as probe:
                    results["after_task_qdrant"] = reindex(api, tuned, QDRANT)
                    api.upsert_items(
                        {"object_id": i["object_id"], "text": f"{i['text']} (revised)"}
                        for i in changed
                    )
                    log(f"changed {len(changed)} items; incremental reindexes")
                    results["incremental_qdrant"] = reindex(api, tuned, QDRANT, incremental=True)
                    time.sleep(0.5)
                results["probe"] = {"ok": probe.ok, "failed": len(probe.failed),
                                    "errors": probe.failed[:5],
                                    "collections_seen": len(probe.seen)}
                results["incremental_parquet"] = reindex(api, tuned, PARQUET, incremental=True)
        finally:
            server.stop()

    report(results)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


def report(results: dict[str, Any]) -> None:
    print()
    print(f"{'run':<22}{'wall s':>9}{'encode s':>10}{'write s':>9}{'items/s':>9}"
          f"{'encoded':>9}{'reused':>8}{'copied':>8}{'switch s':>10}")
    for name in ("full_qdrant", "full_parquet", "after_task_qdrant", "incremental_qdrant",
                 "after_task_parquet", "incremental_parquet"):
        m = results.get(name)
        if not m:
            continue
        t = m.get("timings_s", {})
        print(f"{name:<22}{m['wall_s']:>9.1f}{t.get('encode', 0):>10.1f}{t.get('write', 0):>9.2f}"
              f"{m['items'] / m['wall_s']:>9.1f}{m['encoded']:>9}{m['reused']:>8}"
              f"{m['copied']:>8}{t.get('switch', 0):>10.4f}")
    for sink in ("qdrant", "parquet"):
        full = results.get(f"full_{sink}", {}).get("wall_s")
        if not full:
            continue
        for name, target in (("after_task", 0.1), ("incremental", 0.05)):
            m = results.get(f"{name}_{sink}")
            if m:
                ratio = m["wall_s"] / full
                verdict = "met" if ratio <= target else "MISSED"
                print(f"{sink}: {name} / full = {ratio:.3f} (target <= {target}): {verdict}")
    probe = results.get("probe", {})
    print(f"searches through the alias during two switches: {probe.get('ok')} served, "
          f"{probe.get('failed')} failed (target: 0); collections seen: "
          f"{probe.get('collections_seen')}")
    if "task_s" in results:
        print(f"fine-tuning task: {results['task_s']} s")


if __name__ == "__main__":
    main()
