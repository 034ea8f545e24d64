"""How long a canceled sentence-transformers run takes to stop. Prints figures; asserts nothing.

Runs the real `sentence-transformers-mnrl` plugin on a thread over a synthetic shop whose
items are long (so a training step and an encoding batch take seconds on a CPU), raises the
run's stop flag at a random moment inside the chosen phase, and measures the time from the flag
to the run's thread having unwound with `TaskStopped` — what the runner waits for before its
"run stopped" note (the runner's own share, noticing the cancel, is its status poll, at most
`CANCEL_POLL_S` = 0.25 s, and is not included).

`--service` measures the whole path instead: the same shop through the API of an in-process
service (SQLite + embedded broker), a task canceled during training, from the cancel (the
`canceled` transition's time) to the runner's "run stopped" note — both server-side timestamps.

    .venv/bin/python bench/cancel_latency.py [--trials 5] [--phases training,evaluating]
        [--items 300] [--words 160] [--batch-size 32] [--seq 256] [--service]
        [--without-stop-checks]

`--without-stop-checks` turns the in-pass checks off (`embtune.training.stop_checks`), which
gives the figures from before they existed: the stop seen only between training steps and
between encoding calls.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embtune.clickstream.sessions import SearchSession  # noqa: E402
from embtune.errors import TaskStopped  # noqa: E402
from embtune.plugins.base import RunContext, SourceModel  # noqa: E402
from embtune.plugins.sentence_transformers import ClickstreamMNRLPlugin  # noqa: E402
from tests.support.training_data import InMemoryTrainingData  # noqa: E402

WORDS = [
    "red", "blue", "green", "black", "white", "cotton", "wool", "leather", "steel", "glass",
    "running", "hiking", "winter", "summer", "kitchen", "garden", "office", "travel", "warm",
    "waterproof", "wireless", "portable", "compact", "heavy", "light", "soft", "hard", "cold",
    "large", "small", "classic", "modern", "vintage", "premium", "budget",
]
SOURCE = SourceModel("m", "mini", "builtin:all-MiniLM-L6-v2")
PHASE_MESSAGES = {"training": "training", "evaluating": "evaluating source model"}


def shop(items: int, words: int, seed: int = 0) -> InMemoryTrainingData:
    """`items` long item texts, two clicked searches per item (one with a skipped decoy)."""
    rng = random.Random(seed)
    texts = {f"i{n:04d}": f"item {n}: " + " ".join(rng.choices(WORDS, k=words))
             for n in range(items)}
    ids = list(texts)
    sessions = []
    for n, item in enumerate(ids):
        for k in range(2):
            decoy = rng.choice([other for other in ids if other != item])
            query = " ".join(texts[item].split()[2:6])
            sessions.append(SearchSession(f"s{n}-{k}", query, (decoy, item), (item,)))
    return InMemoryTrainingData(sessions, texts)


def one_trial(data: InMemoryTrainingData, params: dict[str, Any], phase: str,
              work: Path, cache: Path, rng: random.Random) -> dict[str, float]:
    stop = threading.Event()
    reports: list[tuple[float, dict[str, Any]]] = []
    entered = threading.Event()
    outcome: dict[str, Any] = {}
    plugin = ClickstreamMNRLPlugin()
    output = Path(tempfile.mkdtemp(dir=work))

    def report(**fields: Any) -> None:
        reports.append((time.monotonic(), fields))
        in_phase = fields.get("message") == PHASE_MESSAGES[phase]
        if in_phase and (phase != "training" or fields.get("train_step", 0) >= 1):
            entered.set()

    def run() -> None:
        ctx = RunContext(task_id="bench", model=SOURCE,
                         params=plugin.validate_params(params), output_dir=output, data=data,
                         report=report, should_stop=stop.is_set, cache_dir=cache)
        try:
            plugin.run(ctx)
            outcome["end"] = "finished"
        except TaskStopped:
            outcome["end"] = "stopped"
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=run, name="bench-run")
    thread.start()
    if not entered.wait(timeout=900):
        raise SystemExit(f"the run never reached {phase}")
    time.sleep(rng.uniform(0.0, 2.0))  # anywhere inside a step or an encoding batch
    requested = time.monotonic()
    stop.set()
    thread.join()
    steps = [(t, r["train_step"]) for t, r in reports if r.get("train_step")]
    step_s = ((steps[-1][0] - steps[0][0]) / (steps[-1][1] - steps[0][1])
              if len(steps) >= 2 and steps[-1][1] > steps[0][1] else float("nan"))
    return {"latency_s": outcome["at"] - requested, "step_s": step_s,
            "stopped": float(outcome["end"] == "stopped")}


def service_trials(data: InMemoryTrainingData, params: dict[str, Any], trials: int,
                   rng: random.Random) -> list[float]:
    """Cancel → "run stopped" through the service, in seconds, one figure per trial."""
    from fastapi.testclient import TestClient

    from embtune.api.app import create_app
    from embtune.config import Settings

    tasks = "/api/v1/fine-tuning/task"
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), broker_url="embedded")
        with TestClient(create_app(settings)) as client:
            items = [{"object_id": k, "text": v} for k, v in data.item_texts().items()]
            client.post("/api/v1/items", json={"items": items}).raise_for_status()
            for s in data.sessions():
                client.post("/api/v1/clickstream/session", json={
                    "session_id": s.session_id, "search_query": s.query,
                    "search_results": [{"object_id": o} for o in s.results]}).raise_for_status()
                client.post("/api/v1/clickstream/session/events", json={
                    "session_id": s.session_id, "events": [
                        {"event_id": f"{s.session_id}-{i}", "object_id": o}
                        for i, o in enumerate(s.clicks)]}).raise_for_status()
            batch = client.post("/api/v1/clickstream/batch/release").json()["id"]
            model = client.post("/api/v1/embedding-models", json={
                "name": "mini", "plugin_name": "sentence-transformers-mnrl",
                "source": "builtin:all-MiniLM-L6-v2"}).json()["id"]
            figures = []
            for _ in range(trials):
                task = client.post(tasks, json={"embedding_model_id": model, "batch_id": batch,
                                                "params": params}).json()["id"]
                while client.get(f"{tasks}/{task}").json()["progress"].get("train_step", 0) < 1:
                    time.sleep(0.05)
                time.sleep(rng.uniform(0.0, 2.0))
                client.put(f"{tasks}/{task}/cancel").raise_for_status()
                while True:
                    events = client.get(f"{tasks}/{task}/events").json()
                    stopped = [e for e in events if e["message"].startswith("run stopped")]
                    if stopped:
                        break
                    time.sleep(0.05)
                canceled = next(e for e in events if e["to_status"] == "canceled")
                figures.append(_at(stopped[0]) - _at(canceled))
            return figures


def _at(event: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(event["created_at"]).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--phases", default="training,evaluating")
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--words", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--service", action="store_true",
                        help="Through the API: cancel → the runner's 'run stopped' note.")
    parser.add_argument("--without-stop-checks", action="store_true",
                        help="Check the stop flag only between steps and encoding calls.")
    args = parser.parse_args()
    if args.without_stop_checks:
        import contextlib

        import embtune.training.stop_checks as checks

        checks.stop_checks = lambda model, should_stop: contextlib.nullcontext()
    params = {"epochs": 3, "batch_size": args.batch_size, "max_seq_length": args.seq,
              "eval_batch_size": 64, "seed": 0}
    data = shop(args.items, args.words)
    rng = random.Random(1)
    print(f"{args.items} items of ~{args.words} words, seq {args.seq}, batch {args.batch_size}")
    if args.service:
        figures = sorted(service_trials(data, params, args.trials, rng))
        print(f"service, training: cancel → 'run stopped' over {len(figures)} trials: median "
              f"{statistics.median(figures):.2f} s, max {figures[-1]:.2f} s "
              f"(all: {', '.join(f'{v:.2f}' for v in figures)})")
        return
    with tempfile.TemporaryDirectory() as tmp:
        work, cache = Path(tmp) / "runs", Path(tmp) / "cache"
        work.mkdir()
        for phase in args.phases.split(","):
            # evaluating: no cache, so the source model's catalogue is really encoded each time
            trials = [one_trial(data, params, phase, work,
                                cache if phase == "training" else Path(tmp) / f"none{n}", rng)
                      for n in range(args.trials)]
            latencies = sorted(t["latency_s"] for t in trials)
            steps = [t["step_s"] for t in trials if t["step_s"] == t["step_s"]]
            step = f", training step ~{statistics.median(steps):.2f} s" if steps else ""
            print(f"{phase}: cancel → run unwound over {len(trials)} trials: median "
                  f"{statistics.median(latencies):.2f} s, max {latencies[-1]:.2f} s "
                  f"(all: {', '.join(f'{v:.2f}' for v in latencies)}){step}; "
                  f"stopped {int(sum(t['stopped'] for t in trials))}/{len(trials)}")


if __name__ == "__main__":
    main()
