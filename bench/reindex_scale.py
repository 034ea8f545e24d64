"""Sharded reindex throughput with 1 and 2 `embtune worker` processes.

PostgreSQL (a fresh database) and Redis (a namespace and queue of its own), `embtune serve
--no-worker`, then for each worker count N a set of N `embtune worker` processes (one task
thread each, `OMP_NUM_THREADS` = cores // N so that N workers do not fight over the same cores)
run a sharded reindex of SciFact's corpus into one shared Parquet directory. Prints items/s end
to end (create → done, model loads included: every worker loads the model at its first shard)
and of the shard phase alone, for each N, and the ratio.

Asserts nothing; quote the figures with the date, the machine and what else ran on it.

    .venv/bin/python bench/reindex_scale.py [--items 1500] [--shards 4] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import psycopg  # noqa: E402

from embtune.client import Client  # noqa: E402
from embtune.demo.beir import iter_corpus  # noqa: E402
from embtune.demo.run import BASE_SOURCE  # noqa: E402
from embtune.demo.server import free_port  # noqa: E402

PG_ADMIN = os.environ.get("EMBTUNE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("EMBTUNE_BENCH_REDIS", "redis://127.0.0.1:6379/0")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def start(args: list[str], env: dict[str, str], out: Path) -> subprocess.Popen:
    with out.open("ab") as handle:
        return subprocess.Popen([sys.executable, "-m", "embtune.cli", *args], env=env,
                                cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout} s")
        time.sleep(0.2)


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_with_workers(
    n: int, env: dict[str, str], work: Path, url: str, model_id: str, shards: int, sink: dict,
    threads_per_worker: int = 0,
) -> dict[str, Any]:
    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // n)
    worker_env = {**env, "EMBTUNE_WORKER_THREADS": "1", "OMP_NUM_THREADS": str(threads),
                  "MKL_NUM_THREADS": str(threads)}
    logs = [work / f"worker-{n}-{i}.log" for i in range(n)]
    workers = [start(["worker", "--log-level", "info"], worker_env, logs[i]) for i in range(n)]
    try:
        wait_for(lambda: all("consuming queue" in p.read_text(errors="replace")
                             for p in logs if p.exists()) and all(p.exists() for p in logs),
                 180, "workers up")
        log(f"{n} worker(s) up ({threads} thread(s) each); reindexing")
        started = time.monotonic()
        created = httpx.post(f"{url}/api/v1/reindex/task", timeout=60, json={
            "model_id": model_id, "sink": sink, "shards": shards})
        created.raise_for_status()
        task_id = created.json()["id"]
        with Client(url, timeout=60) as api:
            while True:
                task = api.get_reindex_task(task_id)
                if task.status.value in ("done", "failed", "refused", "canceled"):
                    break
                time.sleep(0.25)
        wall = time.monotonic() - started
        if task.status.value != "done":
            raise RuntimeError(f"reindex ended {task.status.value}: {task.detail}")
        m = task.metrics or {}
        items = int(m["items"])
        shard_s = float(m["timings_s"]["shards"])
        return {"workers": n, "threads_per_worker": threads, "items": items,
                "wall_s": round(wall, 2),
                "items_per_s": round(items / wall, 1), "shard_phase_s": round(shard_s, 2),
                "shard_items_per_s": round(items / shard_s, 1), "workers_used": m["workers"],
                "shard_seconds": m["shard_seconds"]}
    finally:
        stop(workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path,
                        default=ROOT.parent / "shared/data/scifact/corpus.jsonl")
    parser.add_argument("--items", type=int, default=0, help="the first N items (0: all)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--threads-per-worker", type=int, default=0,
                        help="torch threads of each worker (0: cores // workers); 1 shows how "
                        "throughput grows when every worker has a core of its own")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    token = secrets.token_hex(4)
    dbname = f"embtune_bench_{token}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    database_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://",
                                                        1) + f"/{dbname}"
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="embtune-scale-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "EMBTUNE_DATABASE_URL": database_url,
               "EMBTUNE_BROKER_URL": REDIS_URL, "EMBTUNE_QUEUE_NAME": f"bench_{token}",
               "EMBTUNE_REDIS_NAMESPACE": f"embtune-bench-{token}",
               "EMBTUNE_DATA_DIR": str(work / "data")}
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start(["serve", "--no-worker", "--port", str(port), "--log-level", "warning"],
                       env, work / "serve.log")
        try:
            def up() -> bool:
                try:
                    return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(up, 120, "embtune serve")
            with Client(url, timeout=300) as api:
                model = api.register_model("all-MiniLM-L6-v2", BASE_SOURCE)
                items = list(iter_corpus(args.corpus))
                if args.items:
                    items = items[: args.items]
                for begin in range(0, len(items), 1000):
                    api.upsert_items(items[begin : begin + 1000])
            log(f"catalogue: {len(items)} items; {args.shards} shards; "
                f"{os.cpu_count()} CPU cores")
            sink = {"type": "parquet", "name": "scale", "url": str(work / "vectors")}
            for n in (int(x) for x in args.workers.split(",")):
                result = run_with_workers(n, env, work, url, model.id, args.shards, sink,
                                          args.threads_per_worker)
                log(json.dumps(result))
                results.append(result)
        finally:
            stop([server])
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(f"embtune-bench-{token}*"))
            if keys:
                client.delete(*keys)
    for r in results:
        print(f"{r['workers']} worker(s) x {r['threads_per_worker']} thread(s): "
              f"{r['items_per_s']} items/s end to end ({r['wall_s']} s), "
              f"{r['shard_items_per_s']} items/s in the shard phase; "
              f"{r['workers_used']} worker(s) wrote shards")
    if len(results) >= 2:
        print(f"ratio {results[-1]['workers']}:{results[0]['workers']} workers: "
              f"{results[-1]['items_per_s'] / results[0]['items_per_s']:.2f}x end to end, "
              f"{results[-1]['shard_items_per_s'] / results[0]['shard_items_per_s']:.2f}x "
              "shard phase")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
