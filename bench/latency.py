"""Dispatch and cancel latency on each broker. Prints figures; asserts nothing.

* dispatch: task created (its `created_at`) → claimed by a worker (the claim event's time);
* cancel: cancel requested → the run has stopped (the runner's "run stopped" event).

Both are measured with the server-side timestamps the task records, so polling does not add
to them. Uses the test suite's `sleepy` plugin (a run that only sleeps through its steps).

    .venv/bin/python bench/latency.py [--n 50] [--brokers embedded,redis,rabbitmq]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embtune.config import Settings  # noqa: E402
from embtune.runtime import Runtime  # noqa: E402
from tests.support.backends import (  # noqa: E402
    AMQP_URL,
    REDIS_URL,
    TEST_PLUGINS,
    create_pg_database,
    drop_pg_database,
    pg_url,
)

BROKERS = {"embedded": "embedded", "redis": REDIS_URL, "rabbitmq": AMQP_URL}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def wait_event(runtime: Runtime, task_id: str, match, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in runtime.tasks.events(task_id):
            if match(event):
                return event
        time.sleep(0.002)
    raise TimeoutError(task_id)


def measure(broker: str, n: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="embtune-latency-"))
    pg = None
    if broker == "embedded":
        database_url = f"sqlite:///{tmp / 'embtune.db'}"
    else:
        pg = create_pg_database()
        database_url = pg_url(pg)
    token = secrets.token_hex(4)
    settings = Settings(
        data_dir=tmp, database_url=database_url, broker_url=BROKERS[broker],
        queue_name=f"lat_{token}", redis_namespace=f"lat-{token}", plugins=TEST_PLUGINS,
        heartbeat_interval_s=1.0,
    )
    runtime = Runtime.build(settings)
    runtime.start_worker()
    try:
        model = runtime.models.register(name="m", plugin_name="sleepy",
                                        source="builtin:all-MiniLM-L6-v2")
        dispatch, cancel = [], []
        for _ in range(n):
            task, _ = runtime.tasks.create(embedding_model_id=model.id,
                                           params={"steps": 1, "step_seconds": 0.0})
            claimed = wait_event(runtime, task.id, lambda e: e.to_status == "processing")
            dispatch.append((claimed.created_at - task.created_at).total_seconds() * 1000)
            wait_event(runtime, task.id, lambda e: e.to_status == "done")
        for _ in range(max(5, n // 5)):
            task, _ = runtime.tasks.create(embedding_model_id=model.id,
                                           params={"steps": 100_000, "step_seconds": 0.01})
            wait_event(runtime, task.id, lambda e: e.to_status == "processing")
            time.sleep(0.2)
            canceled = runtime.tasks.cancel(task.id)
            stopped = wait_event(runtime, task.id, lambda e: e.message.startswith("run stop"))
            cancel.append((stopped.created_at - canceled.updated_at).total_seconds() * 1000)
        return {
            "dispatch_ms": {"n": n, "p50": pct(dispatch, 0.5), "p99": pct(dispatch, 0.99),
                            "mean": round(statistics.mean(dispatch), 1)},
            "cancel_to_stopped_ms": {"n": len(cancel), "p50": pct(cancel, 0.5),
                                     "p99": pct(cancel, 0.99)},
        }
    finally:
        runtime.close()
        if pg:
            drop_pg_database(pg)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--brokers", default="embedded,redis,rabbitmq")
    args = parser.parse_args()
    results = {broker: measure(broker, args.n) for broker in args.brokers.split(",")}
    print(json.dumps(results, indent=2))
    out = ROOT / "bench" / "out" / "latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
