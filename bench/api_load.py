"""API load: a create/list/get mix at rising concurrency against PostgreSQL + Redis, beside the
same server's `/healthz` (the framework's ceiling on this machine) in the same run; then list
latency with a status filter at 1,000,000 tasks. Prints figures; asserts nothing.

    .venv/bin/python bench/api_load.py [--tasks 1000000] [--seconds 10] [--processes 2]

Needs PostgreSQL and Redis on localhost (`make services`). Creates and drops its own database.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG_ADMIN = os.environ.get("EMBTUNE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("EMBTUNE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def run_load(url: str, concurrency: int, seconds: float, pick) -> dict:
    """`concurrency` client threads, each on its own keep-alive connection, for `seconds`."""
    latencies: dict[str, list[float]] = {}
    errors = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def loop() -> None:
        nonlocal errors
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.monotonic() < stop:
                kind, method, path, body = pick()
                started = time.perf_counter()
                response = http.request(method, path, json=body)
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.setdefault(kind, []).append(elapsed)
                    errors += response.status_code >= 500

    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = {"concurrency": concurrency, "errors": errors}
    for kind, values in latencies.items():
        result[kind] = {"rps": round(len(values) / seconds, 1),
                        "p50_ms": round(statistics.median(values), 2),
                        "p99_ms": round(percentile(values, 0.99), 2)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--processes", type=int, default=1,
                        help="API server processes (`embtune serve --processes`)")
    args = parser.parse_args()

    dbname = f"embtune_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    db_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + \
        f"/{dbname}"
    port = 18000 + random.randrange(1000)
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "EMBTUNE_DATA_DIR": f"/tmp/{dbname}", "EMBTUNE_DATABASE_URL": db_url,
           "EMBTUNE_BROKER_URL": REDIS, "EMBTUNE_QUEUE_NAME": dbname,
           "EMBTUNE_REDIS_NAMESPACE": dbname}
    server = subprocess.Popen(
        [sys.executable, "-m", "embtune.cli", "serve", "--port", str(port), "--no-worker",
         "--processes", str(args.processes), "--log-level", "warning"], env=env, cwd=ROOT)
    results: dict = {"processes": args.processes}
    try:
        http = httpx.Client(base_url=url, timeout=30)
        for _ in range(300):
            try:
                if http.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        model = http.post("/api/v1/embedding-models", json={
            "name": "base", "plugin_name": "sentence-transformers-mnrl",
            "source": "builtin:all-MiniLM-L6-v2"}).json()["id"]
        created: list[str] = [http.post("/api/v1/fine-tuning/task",
                                        json={"embedding_model_id": model}).json()["id"]]

        def mix():
            roll = random.random()
            if roll < 0.3:
                return ("create", "POST", "/api/v1/fine-tuning/task",
                        {"embedding_model_id": model})
            if roll < 0.65:
                return ("list", "GET", "/api/v1/fine-tuning/task?limit=20&status=pending", None)
            return ("get", "GET", f"/api/v1/fine-tuning/task/{random.choice(created)}", None)

        def create_only():
            return ("create", "POST", "/api/v1/fine-tuning/task", {"embedding_model_id": model})

        for level in map(int, args.levels.split(",")):
            health = run_load(url, level, args.seconds,
                              lambda: ("healthz", "GET", "/healthz", None))
            creates = run_load(url, level, args.seconds, create_only)
            load = run_load(url, level, args.seconds, mix)
            load["healthz"] = health["healthz"]
            load["create_only"] = creates["create"]
            load["create_vs_healthz"] = round(
                creates["create"]["rps"] / health["healthz"]["rps"], 3)
            load["mix_vs_healthz"] = round(
                sum(load[k]["rps"] for k in ("create", "list", "get") if k in load)
                / health["healthz"]["rps"], 3)
            results[f"c{level}"] = load
            print(json.dumps(load), flush=True)

        print(f"inserting {args.tasks} tasks …", flush=True)
        with psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(
                """
                INSERT INTO tasks (id, status, embedding_model_id, request_hash, params, meta,
                    attempts, created_at, updated_at)
                SELECT lpad(to_hex(g), 32, '0'),
                       (ARRAY['pending','processing','done','canceled','failed','refused'])
                           [1 + g %% 6],
                       %s, 'x', '{}', '{}', 0,
                       now() - make_interval(secs => g), now()
                FROM generate_series(1, %s) AS g
                """,
                (model, args.tasks),
            )
            conn.execute("ANALYZE tasks")
        # the bulk load bypassed the per-status tallies: rebuild them as an operator would
        subprocess.run([sys.executable, "-m", "embtune.cli", "db", "recount"], env=env,
                       cwd=ROOT, check=True)
        latencies = []
        for status in ("pending", "done", "failed") * 100:
            started = time.perf_counter()
            response = http.get(f"/api/v1/fine-tuning/task?limit=20&status={status}")
            latencies.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        results["list_at_scale"] = {
            "tasks": args.tasks, "requests": len(latencies),
            "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2),
            "total_header": response.headers["X-Total-Count"],
        }
        print(json.dumps(results["list_at_scale"]), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    out = ROOT / "bench" / "out" / f"api_load_p{args.processes}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
