"""`make demo` in the suite: `embtune demo --exit` end to end through the CLI entry point, in a
subprocess, on the generated shop (one epoch, so it stays well under a minute of training)."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.backends("sqlite-embedded")
CELL = r"[\s│|]+"  # a table cell border, as Rich draws it
FIGURE = r"\d\.\d{4}"


def test_demo_runs_end_to_end_and_registers_a_tuned_iteration(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160", "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("EMBTUNE_")}
    result = subprocess.run(
        [sys.executable, "-m", "embtune.cli", "demo", "--exit", "--data-dir", str(data_dir),
         "--param", "epochs=1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "uploaded 56 catalogue items" in out
    assert re.search(r"simulated \d+ search sessions with \d+ clicks", out)
    # the verdict leads, decided on the shop's true answers registered as a judged set
    assert "evaluation set 'demo-truth-7': 96 judged queries" in out
    assert re.search(r"BETTER\s+ndcg@10 \+\d\.\d{4} 95% \[\+\d\.\d{4}, \+\d\.\d{4}\]", out), out
    assert "basis: judged set demo-truth-7 · 96 queries" in out
    assert "clicks alone: " in out
    assert "promoted to production" in out
    assert "Judged set demo-truth-7 (96 queries)" in out
    assert "shown lists, debiased" in out
    assert "worst regressions" in out
    assert "All 96 shop queries, true answers" in out
    rows = re.findall(rf"ndcg@10{CELL}({FIGURE}){CELL}({FIGURE}){CELL}([+-]{FIGURE})", out)
    assert len(rows) == 2, out[-3000:]  # the judged set, then all queries through /embed
    for row in rows:
        base, tuned_ndcg, change = (float(v) for v in row)
        assert tuned_ndcg > base and change == pytest.approx(tuned_ndcg - base, abs=2e-4)
    registered = re.search(r"registered iteration ([0-9a-f]{32}) \(parent ([0-9a-f]{32})\)", out)
    assert registered, out[-3000:]
    tuned, parent = registered.groups()
    with sqlite3.connect(data_dir / "embtune.db") as db:
        rows = dict(db.execute("SELECT id, parent_id FROM embedding_models").fetchall())
        status = db.execute(
            "SELECT kind, embedding_model_id, status FROM tasks ORDER BY created_at"
        ).fetchall()
    assert rows == {parent: None, tuned: parent}
    # the base model's index, the task, then the promotion's reindex of the tuned model
    assert status == [("reindex", parent, "done"), ("fine_tuning", parent, "done"),
                      ("reindex", tuned, "done")]
    # the live index is searched before and after the switch; the tuned model's vectors came
    # from the task's own evaluation (the embedding cache), not a second encoding
    assert "Live index before tuning" in out and "Live index after the switch" in out
    assert "0 encoded, 56 from the task's cache" in out
    assert (data_dir / "models" / tuned / "model.safetensors").is_file()
    assert "/embedding-models/production/download" in out
    with sqlite3.connect(data_dir / "embtune.db") as db:
        live = db.execute("SELECT model_id, updated_by FROM aliases WHERE name = 'production'")
        assert live.fetchall() == [(tuned, f"task:{task_id(data_dir)}")]
    assert "Traceback" not in out + result.stderr


def task_id(data_dir: Path) -> str:
    with sqlite3.connect(data_dir / "embtune.db") as db:
        found = db.execute("SELECT id FROM tasks WHERE kind = 'fine_tuning'").fetchone()
        return str(found[0])
