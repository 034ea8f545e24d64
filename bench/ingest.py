"""Clickstream ingestion throughput: sessions/s through each way in, on SQLite and PostgreSQL.

For each backend, a real server (`embtune serve --no-worker`, one process) on a fresh data dir
(and, for PostgreSQL, a fresh database on 127.0.0.1:5432, dropped at the end); every session
has 10 shown results and 1 click. Prints, per backend:

- `/healthz` requests/s with 8 client threads: the framework's ceiling on this machine;
- the single-session endpoints (`POST /session`, then `POST /session/events`), 8 threads;
- the bulk endpoint (`POST /sessions:bulk`) at 100 and at 1,000 sessions per request;
- import tasks from NDJSON and Parquet files (`measure_imports`; see there).

Request bodies are encoded before the clock starts, so the figures are the server's. Target on
PostgreSQL: bulk ≥ 2,500 sessions/s. Asserts nothing; the README quotes the figures.

    .venv/bin/python bench/ingest.py [--sessions 20000] [--single-sessions 3000]
        [--backends sqlite,postgres] [--out bench/out/ingest.json]

Needs PostgreSQL (trust auth) and Redis on localhost for the PostgreSQL half (`make services`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("EMBTUNE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("EMBTUNE_TEST_REDIS", "redis://127.0.0.1:6379/0")
CATALOGUE = 5000  # object ids the sessions draw their results from
RESULTS = 10
SESSION = "/api/v1/clickstream/session"
EVENTS = "/api/v1/clickstream/session/events"
BULK = "/api/v1/clickstream/sessions:bulk"
JSON = {"Content-Type": "application/json"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class Row:
    backend: str
    path: str
    sessions: int
    seconds: float
    per_request: int = 1
    threads: int = 8
    peak_rss_mb: float | None = None

    @property
    def rate(self) -> float:
        return self.sessions / self.seconds if self.seconds else 0.0


def session_row(session_id: str, rng: random.Random) -> dict[str, Any]:
    shown = rng.sample(range(CATALOGUE), RESULTS)
    return {
        "session_id": session_id,
        "search_query": f"query {rng.randrange(100_000)}",
        "search_results": [{"object_id": f"obj-{o}"} for o in shown],
        "user_id": f"user-{rng.randrange(1000)}",
        "created_at": "2026-11-30T10:00:00Z",
        "clicks": [f"obj-{rng.choice(shown)}"],
    }


def run_threads(threads: int, work: list[Any], send: Callable[[httpx.Client, Any], None]) -> float:
    """`threads` clients, each on its own keep-alive connection, share `work`; wall seconds."""
    lock = threading.Lock()
    queue = iter(work)
    failures: list[str] = []

    def loop(http: httpx.Client) -> None:
        while True:
            with lock:
                item = next(queue, None)
            if item is None or failures:
                return
            try:
                send(http, item)
            except Exception as exc:  # reported once, stops the measurement
                failures.append(repr(exc))

    clients = [httpx.Client(base_url=SERVER.url, timeout=120) for _ in range(threads)]
    workers = [threading.Thread(target=loop, args=(c,)) for c in clients]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    for c in clients:
        c.close()
    if failures:
        raise RuntimeError(f"a request failed: {failures[0]}")
    return elapsed


def expect(response: httpx.Response, *codes: int) -> httpx.Response:
    if response.status_code not in codes:
        path = response.request.url.path
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
    return response


# -- the ways in ----------------------------------------------------------------------------------
def measure_healthz(backend: str, seconds: float, threads: int = 8) -> Row:
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def loop(index: int) -> None:
        with httpx.Client(base_url=SERVER.url, timeout=30) as http:
            while time.monotonic() < stop:
                expect(http.get("/healthz"), 200)
                counts[index] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return Row(backend, "/healthz (requests/s)", sum(counts), time.perf_counter() - started,
               threads=threads)


def measure_single(backend: str, sessions: list[dict[str, Any]], threads: int = 8) -> Row:
    """What a client does today: the session, then its clicks, two requests per session."""
    work = []
    for s in sessions:
        body = {k: v for k, v in s.items() if k != "clicks"}
        events = {"session_id": s["session_id"], "events": [
            {"event_id": f"{s['session_id']}-c{i}", "object_id": o}
            for i, o in enumerate(s["clicks"])
        ]}
        work.append((json.dumps(body).encode(), json.dumps(events).encode()))

    def send(http: httpx.Client, item: tuple[bytes, bytes]) -> None:
        expect(http.post(SESSION, content=item[0], headers=JSON), 201)
        expect(http.post(EVENTS, content=item[1], headers=JSON), 200)

    seconds = run_threads(threads, work, send)
    return Row(backend, "single endpoints", len(sessions), seconds, threads=threads)


def measure_bulk(backend: str, sessions: list[dict[str, Any]], per_request: int,
                 threads: int) -> Row:
    bodies = [
        json.dumps({"sessions": sessions[start : start + per_request]}).encode()
        for start in range(0, len(sessions), per_request)
    ]

    def send(http: httpx.Client, body: bytes) -> None:
        answer = expect(http.post(BULK, content=body, headers=JSON), 200).json()
        if answer["accepted"] != len(answer["results"]):
            raise RuntimeError(f"not all accepted: {answer['results'][:2]}")

    seconds = run_threads(threads, bodies, send)
    return Row(backend, f"bulk, {per_request}/request", len(sessions), seconds,
               per_request=per_request, threads=threads)


IMPORTS = "/api/v1/imports"


def write_import_files(sessions: int, work_dir: Path) -> dict[str, Path]:
    """An NDJSON and a Parquet file of the same `sessions` sessions (`session_row` shape),
    written a slice at a time (the bench itself never holds a whole file's rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    work_dir.mkdir(parents=True, exist_ok=True)
    ndjson = work_dir / f"sessions-{sessions}.jsonl"
    parquet = work_dir / f"sessions-{sessions}.parquet"
    writer = None
    with ndjson.open("w") as out:
        for start in range(0, sessions, 10_000):
            rng = random.Random(start)
            rows = [session_row(f"import-{i}", rng)
                    for i in range(start, min(sessions, start + 10_000))]
            out.writelines(json.dumps(r) + "\n" for r in rows)
            table = pa.Table.from_pylist(rows)
            if writer is None:
                writer = pq.ParquetWriter(parquet, table.schema)
            writer.write_table(table)
    assert writer is not None
    writer.close()
    return {"ndjson": ndjson, "parquet": parquet}


def measure_import(backend: str, path: Path, fmt: str, data_dir: Path) -> Row:
    """One import task on a fresh server (API + in-process worker, fresh database), followed to
    `done`: the task's own seconds and the process's peak memory (`metrics.peak_rss_mb`)."""
    with (serve(backend, data_dir, worker=True) as url,
          httpx.Client(base_url=url, timeout=60) as http):
        task = expect(http.post(IMPORTS, json={"url": str(path), "kind": "sessions",
                                               "format": fmt}), 201).json()
        while task["status"] in ("pending", "processing"):
            time.sleep(0.5)
            task = expect(http.get(f"{IMPORTS}/{task['id']}"), 200).json()
        if task["status"] != "done":
            raise RuntimeError(f"import {task['id']} ended {task['status']}: {task['detail']}")
        m = task["metrics"]
        if m["accepted"] != m["rows"]:
            raise RuntimeError(f"import {task['id']}: {m}")
        return Row(backend, f"import task, {fmt}", m["rows"], m["seconds"], per_request=0,
                   threads=1, peak_rss_mb=m["peak_rss_mb"])


def measure_imports(backend: str, sessions: int, work_dir: Path) -> list[Row]:
    """Import tasks from a local NDJSON and a local Parquet file of `sessions` sessions, each
    on its own fresh server, plus a 10x smaller NDJSON file: peak memory must not grow with the
    file. Target on PostgreSQL: >= 5,000 sessions/s."""
    rows = []
    small = max(1000, sessions // 10)
    for count in (small, sessions):
        files = write_import_files(count, work_dir / "files")
        for fmt in (("ndjson",) if count == small else ("ndjson", "parquet")):
            data_dir = work_dir / f"{fmt}-{count}"
            data_dir.mkdir(parents=True, exist_ok=True)
            target = data_dir / files[fmt].name
            files[fmt].rename(target)
            rows.append(measure_import(backend, target, fmt, data_dir))
            log(f"  {rows[-1].path} ({count:,}): {rows[-1].rate:,.0f} sessions/s, "
                f"peak {rows[-1].peak_rss_mb:.0f} MB")
    return rows


# -- servers --------------------------------------------------------------------------------------
@dataclass
class Server:
    url: str = ""


SERVER = Server()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def postgres_database() -> Iterator[str]:
    import psycopg

    name = f"embtune_bench_ingest_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") \
            + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def serve(backend: str, data_dir: Path, *, worker: bool = False) -> Iterator[str]:
    """A fresh `embtune serve` on `backend` (with its in-process worker if asked); its URL."""
    port = free_port()
    env = {**os.environ, "EMBTUNE_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    with postgres_database() if backend == "postgres" else _nothing() as db_url:
        if db_url:
            env |= {"EMBTUNE_DATABASE_URL": db_url, "EMBTUNE_BROKER_URL": REDIS,
                    "EMBTUNE_QUEUE_NAME": data_dir.name, "EMBTUNE_REDIS_NAMESPACE": data_dir.name}
        server = subprocess.Popen(
            [sys.executable, "-m", "embtune.cli", "serve", "--port", str(port),
             "--worker" if worker else "--no-worker", "--log-level", "warning"], env=env, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, timeout=5) as http:
                for _ in range(300):
                    try:
                        if http.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.2)
                else:
                    raise RuntimeError("the server did not start")
            yield url
        finally:
            server.terminate()
            server.wait(timeout=30)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


# -- the run --------------------------------------------------------------------------------------
def run_backend(backend: str, args: argparse.Namespace) -> list[Row]:
    rng = random.Random(17)
    data_dir = Path(tempfile.mkdtemp(prefix=f"embtune-ingest-{backend}-"))
    rows: list[Row] = []
    try:
        with serve(backend, data_dir) as url:
            SERVER.url = url
            log(f"{backend}: server at {url}")
            rows.append(measure_healthz(backend, args.seconds))
            log(f"  {rows[-1].path}: {rows[-1].rate:,.0f}")
            single = [session_row(f"single-{i}", rng) for i in range(args.single_sessions)]
            rows.append(measure_single(backend, single))
            log(f"  {rows[-1].path}: {rows[-1].rate:,.0f} sessions/s")
            for per_request in (100, 1000):
                batch = [session_row(f"bulk{per_request}-{i}", rng) for i in range(args.sessions)]
                rows.append(measure_bulk(backend, batch, per_request, args.bulk_threads))
                log(f"  {rows[-1].path}: {rows[-1].rate:,.0f} sessions/s")
        if not args.skip_imports:
            rows += measure_imports(backend, args.import_sessions, data_dir / "imports")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def print_table(rows: list[Row]) -> None:
    print()
    print(f"{'backend':<10}{'path':<24}{'threads':>8}{'sessions':>10}{'seconds':>9}"
          f"{'per s':>9}{'x single':>10}{'x healthz':>11}{'peak MB':>9}")
    for backend in dict.fromkeys(r.backend for r in rows):
        mine = [r for r in rows if r.backend == backend]
        single = next((r.rate for r in mine if r.path == "single endpoints"), 0.0)
        healthz = next((r.rate for r in mine if r.path.startswith("/healthz")), 0.0)
        for r in mine:
            vs_single = f"{r.rate / single:.1f}x" if single and r.path != "single endpoints" \
                and not r.path.startswith("/healthz") else ""
            vs_healthz = f"{r.rate / healthz:.2f}x" if healthz and r is not mine[0] else ""
            peak = f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb is not None else ""
            print(f"{backend:<10}{r.path:<24}{r.threads:>8}{r.sessions:>10,}{r.seconds:>9.1f}"
                  f"{r.rate:>9,.0f}{vs_single:>10}{vs_healthz:>11}{peak:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20_000,
                        help="sessions per bulk measurement (each of 100 and 1,000/request)")
    parser.add_argument("--single-sessions", type=int, default=3_000,
                        help="sessions through the single-session endpoints")
    parser.add_argument("--import-sessions", type=int, default=100_000,
                        help="sessions per import file")
    parser.add_argument("--bulk-threads", type=int, default=2,
                        help="client threads posting bulk bodies")
    parser.add_argument("--seconds", type=float, default=5.0, help="/healthz measurement")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--skip-imports", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "ingest.json")
    args = parser.parse_args()

    rows: list[Row] = []
    for backend in args.backends.split(","):
        rows += run_backend(backend.strip(), args)
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(
        [{**r.__dict__, "per_s": round(r.rate, 1)} for r in rows], indent=2
    ))


if __name__ == "__main__":
    main()
