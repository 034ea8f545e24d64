"""What a crash costs a fine-tuning task that checkpoints: wall time and result of a task whose
server is killed (SIGKILL) halfway through training and restarted, against an uninterrupted one.

A real `embtune serve` process (embedded SQLite and broker, in a fresh data dir, API and worker
in one process, as a single-box install runs) trains on a SciFact subset (the train queries'
simulated sessions, as `bench/finetune_speed.py` simulates them). Tasks on the same batch and
seed, one after the other:

- plain: no checkpoints, uninterrupted (the baseline);
- checkpointed: `checkpoint_every_steps`, uninterrupted (what saving alone costs);
- interrupted: the same, the server killed once a complete checkpoint at or past half of the
  training steps exists, then started again; recovery re-queues the task after the heartbeat
  timeout and the new run resumes from the checkpoint.

Each measured task starts with an empty embedding cache (see `forget_vectors`), so every one
encodes its tuned model's catalogue; the first attempt of the interrupted task leaves the source
model's vectors there for its second, as it would in production.

The interrupted task's time is its working time: from create to the kill, plus from the second
claim to done (the downtime — a dead server, its restart, the heartbeat timeout — depends on the
deployment, not on checkpointing; it is printed apart). Prints wall times, ratios (target: the
interrupted task within 1.15x of the plain one), the steps re-done and the validation metric of
each. Asserts nothing.

    .venv/bin/python bench/resume.py [--limit-queries 300] [--max-items 2000] \
        [--params '{"epochs": 1, "batch_size": 16}'] [--every 10] [--out bench/out/resume.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402
from eta import ingest  # noqa: E402
from finetune_speed import simulate_sessions  # noqa: E402

from embtune.client import Client  # noqa: E402
from embtune.demo.run import BASE_SOURCE  # noqa: E402
from embtune.demo.server import free_port  # noqa: E402
from embtune.training.checkpoints import last_complete  # noqa: E402

# a killed run is noticed within seconds (production: a minute)
FAST_RECOVERY = {
    "EMBTUNE_HEARTBEAT_INTERVAL_S": "0.5",
    "EMBTUNE_HEARTBEAT_TIMEOUT_S": "3",
    "EMBTUNE_RECOVERY_INTERVAL_S": "0.5",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Server:
    """`embtune serve` on one port and data dir; killed and started again on the same ones."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 180.0) -> None:
        env = {**os.environ, "EMBTUNE_DATA_DIR": str(self.data_dir),
               "EMBTUNE_BROKER_URL": "embedded", **FAST_RECOVERY}
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "embtune.cli", "serve", "--port", str(self.port),
                 "--log-level", "warning"],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"embtune serve exited early; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"embtune serve not up in {timeout_s} s; see {self.log_path}")
            time.sleep(0.2)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=60)


def _claimed_at(api: Client, task_id: str) -> list[float]:
    """When each run claimed the task (epoch seconds, from its events)."""
    return [
        (e.created_at if e.created_at.tzinfo else e.created_at.replace(tzinfo=UTC)).timestamp()
        for e in api.task_events(task_id)
        if e.to_status is not None and e.to_status.value == "processing"
    ]


def forget_vectors(data_dir: Path) -> None:
    """Empty the embedding cache (safe at any time): a task's tuned model has the same weights
    as the one before it on the same batch and seed, and would find its vectors there, so the
    run measured after another would skip an evaluation the first one paid for."""
    shutil.rmtree(data_dir / "cache" / "embeddings", ignore_errors=True)


def run_plain(api: Client, model_id: str, batch_id: str | None, params: dict[str, Any],
              label: str, data_dir: Path | None = None) -> dict[str, Any]:
    if data_dir is not None:
        forget_vectors(data_dir)
    started = time.time()
    task = api.create_task(model_id, batch_id=batch_id, params=params)
    final = list(api.follow(task.id, interval_s=0.25))[-1]
    wall = time.time() - started
    if final.status.value != "done":
        raise SystemExit(f"{label} ended {final.status.value}: {final.detail}")
    log(f"{label}: {wall:.1f} s")
    return {"task": final, "wall_s": wall, "work_s": wall, "downtime_s": 0.0}


def run_interrupted(api_url: str, server: Server, model_id: str, batch_id: str | None,
                    params: dict[str, Any]) -> dict[str, Any]:
    checkpoints = server.data_dir / "models" / ".checkpoints"
    forget_vectors(server.data_dir)
    with Client(api_url, timeout=300) as api:
        started = time.time()
        task = api.create_task(model_id, batch_id=batch_id, params=params)
        steps_seen, total = 0, None
        while True:
            current = api.get_task(task.id)
            extra = current.progress.model_dump()  # extra fields sit beside the common ones
            steps_seen = max(steps_seen, int(extra.get("train_step") or 0))
            total = extra.get("train_total_steps") or total
            saved = last_complete(checkpoints / task.id)
            if saved is not None and total and saved.step * 2 >= int(total):
                break
            if current.status.value != "processing" and current.status.value != "pending":
                raise SystemExit(f"interrupted run ended {current.status.value} before the kill")
            time.sleep(0.05)
    saved_steps = [int(p.name.split("-")[1]) for p in (checkpoints / task.id).glob("checkpoint-*")]
    server.kill()
    killed = time.time()
    # the steps trained before the kill: at least what progress showed and what was saved
    trained = max([steps_seen, *saved_steps])
    log(f"interrupted: killed after step ~{trained} of {total} (checkpoint {saved.step})")
    server.start()
    with Client(server.url, timeout=300) as api:
        final = list(api.follow(task.id, interval_s=0.25))[-1]
        done = time.time()
        claims = _claimed_at(api, task.id)
    if final.status.value != "done":
        raise SystemExit(f"interrupted run ended {final.status.value}: {final.detail}")
    reclaimed = claims[-1] if len(claims) >= 2 else killed
    work = (killed - started) + (done - reclaimed)
    resumed = (final.metrics or {}).get("training", {}).get("resumed_from_step")
    log(f"interrupted: {done - started:.1f} s wall, {work:.1f} s working, resumed from "
        f"{resumed}")
    return {"task": final, "wall_s": done - started, "work_s": work,
            "downtime_s": reclaimed - killed, "trained_before_kill": trained,
            "resumed_from_step": resumed,
            "steps_redone": None if resumed is None else max(trained - resumed, 0)}


def metric(task: Any) -> float | None:
    after = (task.metrics or {}).get("after") or {}
    return after.get("ndcg@10")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beir", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--limit-queries", type=int, default=300)
    parser.add_argument("--max-items", type=int, default=2000)
    parser.add_argument("--params", default='{"epochs": 1, "batch_size": 16, "seed": 0}',
                        help="task params as JSON (all three tasks)")
    parser.add_argument("--every", type=int, default=10, help="checkpoint_every_steps")
    parser.add_argument("--skip-checkpointed", action="store_true",
                        help="leave out the uninterrupted run with checkpoints")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "resume.json")
    args = parser.parse_args()
    params = json.loads(args.params)
    checkpointed = {**params, "checkpoint_every_steps": args.every}

    data, figures = simulate_sessions(args.beir, args.limit_queries, args.max_items, 3)
    log(f"data: {figures}")
    workdir = Path(tempfile.mkdtemp(prefix="embtune-resume-"))
    server = Server(workdir / "data", workdir / "serve.log")
    server.start()
    rows: dict[str, dict[str, Any]] = {}
    try:
        with Client(server.url, timeout=300) as api:
            ingest(api, data)
            model = api.register_model("all-MiniLM-L6-v2", BASE_SOURCE)
            # a first task releases the batch and warms the embedding cache for all that follow
            warm = run_plain(api, model.id, None, params, "warm-up")
            batch_id = warm["task"].batch_id
            rows["plain"] = run_plain(api, model.id, batch_id, params, "plain", server.data_dir)
            if not args.skip_checkpointed:
                rows["checkpointed"] = run_plain(api, model.id, batch_id, checkpointed,
                                                 "checkpointed", server.data_dir)
        rows["interrupted"] = run_interrupted(server.url, server, model.id, batch_id,
                                              checkpointed)
    finally:
        server.kill()

    base = rows["plain"]
    steps = (base["task"].metrics or {}).get("training", {}).get("steps")
    table = []
    for name, row in rows.items():
        training = (row["task"].metrics or {}).get("training", {})
        table.append({
            "run": name,
            "work_s": round(row["work_s"], 1),
            "ratio": round(row["work_s"] / base["work_s"], 3),
            "downtime_s": round(row["downtime_s"], 1),
            "steps": training.get("steps"),
            "resumed_from": row.get("resumed_from_step"),
            "steps_redone": row.get("steps_redone"),
            "checkpoints_saved": training.get("checkpoints_saved"),
            "ndcg@10": metric(row["task"]),
            "ndcg@10_diff": (None if metric(row["task"]) is None or metric(base["task"]) is None
                             else round(metric(row["task"]) - metric(base["task"]), 6)),
        })
    result = {"data": figures, "params": params, "checkpoint_every_steps": args.every,
              "train_steps": steps, "runs": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    columns = list(table[0])
    print(" | ".join(columns))
    for row in table:
        print(" | ".join("-" if row[c] is None else str(row[c]) for c in columns))
    print(f"target: interrupted within 1.15x of plain; got {table[-1]['ratio']}x "
          f"({'met' if table[-1]['ratio'] <= 1.15 else 'missed'})")


if __name__ == "__main__":
    main()
