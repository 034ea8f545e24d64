"""Does the click-only verdict agree with the truth? A grid of real fine-tuning tasks.

Through the running service (embedded defaults, in this process), for each data set — the demo
shop and a BEIR data set (default: SciFact from ../shared) — load the catalogue, simulate
sessions on the base model's top 10 with the demo's position-biased click model, register the
data set's true answers as a judged evaluation set, then run one task per grid cell (learning
rate x epochs, one of them a setting that damages the model). Each task reports both verdicts:
the judged one (true answers, the task's headline) and the click-only one (debiased click DCG@10
on the held-out queries' shown lists: what a user without a judged set gets). Prints, per cell,
both verdicts with their intervals and whether they agree, then the targets:

- no decisive click-only verdict whose sign disagrees with the judged delta;
- at least 80 % of judged-decisive runs also decisive (same sign) on clicks.

Asserts nothing; the README quotes the table with the date and the machine.

    .venv/bin/python bench/verdict.py [--datasets shop,beir] [--beir DIR] \
        [--beir-max-seq-length 128] [--out bench/out/verdict.json]
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
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from embtune.client import Client  # noqa: E402
from embtune.config import Settings  # noqa: E402
from embtune.demo.beir import iter_corpus  # noqa: E402
from embtune.demo.click_model import PositionBiasedClickModel  # noqa: E402
from embtune.demo.run import (  # noqa: E402
    BASE_SOURCE,
    SHOP_PARAMS,
    beir_truth,
    load_shop,
    shop_truth,
)
from embtune.demo.server import free_port, start_server  # noqa: E402
from embtune.demo.simulate import simulate_beir  # noqa: E402

SHOP_GRID = [  # (learning rate, epochs); the last one damages the model
    (1e-4, 4),
    (3e-5, 1),
    (1e-5, 1),
    (1e-3, 4),
    (1e-2, 4),
]
BEIR_GRID = [
    (3e-5, 1),
    (1e-4, 1),
    (3e-5, 3),
    (1e-3, 1),
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class _Quiet:
    """A console for the demo's loaders that prints through `log`."""

    def print(self, *parts: Any) -> None:
        log(" ".join(str(p) for p in parts).strip())


def load_beir_data(api: Client, beir: Path, max_seq_length: int, seed: int) -> None:
    batch: list[dict[str, str]] = []
    for record in iter_corpus(beir / "corpus.jsonl"):
        batch.append(record)
        if len(batch) == 1000:
            api.upsert_items(batch)
            batch = []
    if batch:
        api.upsert_items(batch)
    report = simulate_beir(
        api, beir, split="train", model_source=BASE_SOURCE,
        click_model=PositionBiasedClickModel(seed=seed), max_seq_length=max_seq_length,
        on_progress=log,
    )
    log(f"simulated {report.sessions} sessions, {report.clicks} clicks on {report.queries} "
        "train queries")


def run_task(
    api: Client, model_id: str, params: dict[str, Any], batch_id: str | None
) -> tuple[dict[str, Any], str | None]:
    """Run one task to its end; every cell trains on the batch the first one released."""
    task = api.create_task(model_id, params=params, batch_id=batch_id,
                           idempotency_key=f"bench-{time.time_ns()}")
    last = ""
    for current in api.follow(task.id):
        message = current.progress.message
        if message != last:
            log(f"  task {task.id[-6:]}: {current.status.value} {message}")
            last = message
        final = current
    if final.status.value != "done":
        raise RuntimeError(f"task {task.id} ended {final.status.value}: {final.detail}")
    return final.metrics or {}, final.batch_id


def cell(dataset: str, lr: float, epochs: int, metrics: dict[str, Any]) -> dict[str, Any]:
    judged = metrics.get("judged", {})
    clicks = metrics.get("clicks", {}).get("shown_lists", {})
    judged_delta = judged.get("delta", {}).get("ndcg@10")
    click_verdict = clicks.get("verdict", "inconclusive")
    judged_verdict = judged.get("verdict", "inconclusive")
    sign = {"better": 1, "worse": -1}
    conflict = (
        click_verdict in sign and judged_delta is not None and judged_delta != 0
        and sign[click_verdict] * judged_delta < 0
    )
    return {
        "dataset": dataset,
        "learning_rate": lr,
        "epochs": epochs,
        "judged_verdict": judged_verdict,
        "judged_delta": judged_delta,
        "judged_ci95": judged.get("ci95", {}).get("ndcg@10"),
        "judged_queries": judged.get("queries"),
        "click_verdict": click_verdict,
        "click_delta": clicks.get("delta"),
        "click_ci95": clicks.get("ci95"),
        "click_queries": clicks.get("queries"),
        # the same estimate normalised per query (reported, not decided on)
        "click_ndcg_delta": clicks.get("ndcg", {}).get("delta"),
        "click_ndcg_ci95": clicks.get("ndcg", {}).get("ci95"),
        "full_catalogue_delta": metrics.get("clicks", {}).get("full_catalogue", {})
        .get("delta", {}).get("ndcg@10"),
        "full_catalogue_ci95": metrics.get("clicks", {}).get("full_catalogue", {})
        .get("ci95", {}).get("ndcg@10"),
        "click_reason": clicks.get("reason"),
        "propensities": clicks.get("propensities", {}).get("examination"),
        "conflict": conflict,
        "agree": click_verdict == judged_verdict,
    }


def fmt(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return "—"
    return f"{value:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else f"{value:+.3f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ("data", "lr", "ep", "judged NDCG@10 Δ [95% CI]", "judged",
              "click DCG@10 Δ [95% CI]", "clicks", "click nDCG@10 Δ [95% CI]",
              "old report Δ [95% CI]", "agree")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(f"| {r['dataset']} | {r['learning_rate']:g} | {r['epochs']} | "
              f"{fmt(r['judged_delta'], r['judged_ci95'])} | {r['judged_verdict']} | "
              f"{fmt(r['click_delta'], r['click_ci95'])} ({r['click_queries']} q) | "
              f"{r['click_verdict']} | {fmt(r['click_ndcg_delta'], r['click_ndcg_ci95'])} | "
              f"{fmt(r['full_catalogue_delta'], r['full_catalogue_ci95'])} | "
              f"{'CONFLICT' if r['conflict'] else 'yes' if r['agree'] else 'no'} |")
    decisive = [r for r in rows if r["judged_verdict"] in ("better", "worse")]
    covered = [r for r in decisive if r["click_verdict"] == r["judged_verdict"]]
    conflicts = [r for r in rows if r["conflict"]]
    print()
    print(f"wrong-sign decisive click verdicts: {len(conflicts)} of {len(rows)} runs "
          "(target 0)")
    if decisive:
        print(f"judged-decisive runs also decisive on clicks: {len(covered)} of {len(decisive)} "
              f"({100 * len(covered) / len(decisive):.0f} %, target >= 80 %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="shop,beir")
    parser.add_argument("--beir", type=Path, default=ROOT.parent / "shared/data/scifact")
    parser.add_argument("--beir-max-seq-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    datasets = args.datasets.split(",")
    rows: list[dict[str, Any]] = []
    from embtune.runtime import prepare_task_process

    with tempfile.TemporaryDirectory(prefix="embtune-verdict-") as tmp:
        for dataset in datasets:
            settings = Settings(data_dir=Path(tmp) / dataset, broker_url="embedded")
            prepare_task_process(settings)
            server = start_server(settings, "127.0.0.1", free_port())
            try:
                with Client(server.url, timeout=120) as api:
                    model = api.register_model("all-MiniLM-L6-v2", BASE_SOURCE)
                    if dataset == "shop":
                        load_shop(api, _Quiet(), sessions_per_query=6, seed=args.seed)
                        truth = shop_truth(args.seed)
                        base, grid = dict(SHOP_PARAMS), SHOP_GRID
                    else:
                        load_beir_data(api, args.beir, args.beir_max_seq_length, args.seed)
                        truth = beir_truth(args.beir, "test")
                        base = {"max_seq_length": args.beir_max_seq_length}
                        grid = BEIR_GRID
                    found = api.create_evaluation_set(f"{dataset}-truth", truth)
                    log(f"{dataset}: judged set of {found.queries_count} queries")
                    batch_id = None
                    for lr, epochs in grid:
                        params = {**base, "learning_rate": lr, "epochs": epochs,
                                  "evaluation_set_id": found.id}
                        started = time.monotonic()
                        metrics, batch_id = run_task(api, model.id, params, batch_id)
                        row = cell(dataset, lr, epochs, metrics)
                        row["seconds"] = round(time.monotonic() - started, 1)
                        rows.append(row)
                        judged = fmt(row["judged_delta"], row["judged_ci95"])
                        log(f"{dataset} lr={lr:g} epochs={epochs}: judged "
                            f"{row['judged_verdict']} {judged}, clicks {row['click_verdict']} "
                            f"{fmt(row['click_delta'], row['click_ci95'])} ({row['seconds']} s)")
            finally:
                server.stop()
    print()
    print_table(rows)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
