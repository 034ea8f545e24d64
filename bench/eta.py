"""Is preflight's estimate right? The same kind of fine-tuning task run several times on one host.

Through the running service (embedded defaults, in this process, fresh data dir): a SciFact
subset (the train queries' simulated sessions, as `bench/finetune_speed.py` simulates them) is
ingested; then task after task on the same batch and params (a new seed each), each preceded by
a preflight. The first preflight has no history and falls back to the constants; every run
records what it measured, and later preflights estimate from that. Prints, per run, the estimate,
its basis, the wall time the client saw from create to done, and the error. Asserts nothing.

    .venv/bin/python bench/eta.py [--runs 3] [--limit-queries 150] [--max-items 1000] \
        [--params '{"epochs": 1}'] [--out bench/out/eta.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from finetune_speed import simulate_sessions  # noqa: E402

from embtune.client import Client  # noqa: E402
from embtune.config import Settings  # noqa: E402
from embtune.demo.run import BASE_SOURCE  # noqa: E402
from embtune.demo.server import free_port, start_server  # noqa: E402


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def ingest(api: Client, data: Any) -> None:
    items = [{"object_id": oid, "text": text} for oid, text in data.item_texts().items()]
    for start in range(0, len(items), 1000):
        api.upsert_items(items[start:start + 1000])
    rows = [
        {"session_id": s.session_id, "search_query": s.query,
         "search_results": [{"object_id": oid} for oid in s.results],
         "clicks": [{"object_id": oid} for oid in s.clicks], "irrelevant": s.irrelevant}
        for s in data.sessions()
    ]
    for start in range(0, len(rows), 1000):
        api.ingest_sessions_bulk(rows[start:start + 1000])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beir", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit-queries", type=int, default=150)
    parser.add_argument("--max-items", type=int, default=1000)
    parser.add_argument("--params", default='{"epochs": 1}', help="task params as JSON")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "eta.json")
    args = parser.parse_args()
    params = json.loads(args.params)

    data, figures = simulate_sessions(args.beir, args.limit_queries, args.max_items, 3)
    log(f"data: {figures}")
    workdir = Path(tempfile.mkdtemp(prefix="embtune-eta-"))
    server = start_server(Settings(data_dir=workdir / "data", broker_url="embedded"),
                          "127.0.0.1", free_port())
    results: dict[str, Any] = {"data": figures, "params": params, "runs": []}
    try:
        with Client(server.url, timeout=300) as api:
            ingest(api, data)
            model = api.register_model("all-MiniLM-L6-v2", BASE_SOURCE)
            batch_id = None
            for run in range(1, args.runs + 1):
                body = {**params, "seed": run}
                preflight = api.preflight(model.id, batch_id=batch_id, params=body)
                started = time.monotonic()
                task = api.create_task(model.id, batch_id=batch_id, params=body)
                final = list(api.follow(task.id, interval_s=0.5))[-1]
                wall = time.monotonic() - started
                if final.status.value != "done":
                    raise SystemExit(f"run {run} ended {final.status.value}: {final.detail}")
                batch_id = final.batch_id
                performance = (final.metrics or {}).get("performance", {})
                estimate = preflight["estimated_seconds"]
                row = {
                    "run": run,
                    "basis": preflight["estimate"]["basis"],
                    "source_vectors_cached": preflight["estimate"]["source_vectors_cached"],
                    "estimated_s": estimate,
                    "estimate": preflight["estimate"],
                    "actual_s": round(wall, 1),
                    "phases_s": performance.get("phases_s"),
                    "error": round(estimate / wall - 1, 3) if estimate else None,
                    "precision": performance.get("precision"),
                    "utilization": {
                        name: phase.get("fraction_of_peak") for name, phase in
                        (performance.get("utilization") or {}).get("phases", {}).items()
                    },
                }
                results["runs"].append(row)
                log(f"run {run}: estimated {estimate} s ({row['basis']}), actual {wall:.1f} s, "
                    f"error {row['error']:+.1%}")
    finally:
        server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps([{k: r[k] for k in ("run", "basis", "source_vectors_cached", "estimated_s",
                                         "actual_s", "error")} for r in results["runs"]],
                     indent=2))


if __name__ == "__main__":
    main()
