"""The performance table of `embtune task show` and the estimate line of `task preflight`: what
they show from a run's `metrics.performance` (or a preflight report), and what they leave blank
when an older task or another method reported less."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from embtune.cli import app as cli
from embtune.cli.performance import estimate_line, performance_table

PHASE = {"tokens": 12345, "gflop": 268.1, "seconds": 30.6, "achieved_gflops": 8.76,
         "peak_gflops": 402.7, "precision": "bf16", "fraction_of_peak": 0.0218}
METRICS: dict[str, Any] = {
    "verdict": {"verdict": "better", "basis": "clicks", "metric": "click_dcg@10", "delta": 0.1},
    "performance": {
        "precision": {"encode": "bf16", "train": "bf16", "device": "cpu"},
        "phases_s": {"load": 6.2, "examples": 0.4, "evaluate_source": 30.6, "train": 101.3,
                     "evaluate_tuned": 29.8, "save": 3.1},
        "total_s": 171.4,
        "utilization": {
            "formula": "forward FLOPs per sequence of n (padded) tokens = 2·N·n + 4·L·n²·d",
            "peak_gflops": {"fp32": 151.2, "bf16": 402.7},
            "peak_probe": {"device": "cpu", "threads": 2, "cpu": "AMD EPYC",
                           "measured_at": "2026-12-01T10:00:00+00:00", "cached": True},
            "phases": {
                "evaluate_source": PHASE,
                "train": {**PHASE, "gflop": 4021.5, "seconds": 101.3, "achieved_gflops": 39.7,
                          "fraction_of_peak": 0.0986},
                "evaluate_tuned": {**PHASE, "seconds": 29.8, "achieved_gflops": 9.0,
                                   "fraction_of_peak": 0.0223},
            },
        },
        "throughput": {
            "model_params": 22713216,
            "workload_tokens": {"catalogue": 1000, "queries": 100, "train": 5000},
            "estimated": {"basis": "measured", "fixed_s": 9.1, "evaluate_source_s": 30.2,
                          "train_s": 99.0, "evaluate_tuned_s": 29.9, "total_s": 168.2},
            "samples": [],
            "once_per_process_s": 2.5,
        },
    },
}


def render(renderable: Any) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def rows(table: Table) -> list[list[str]]:
    cells = [[str(cell) for cell in column.cells] for column in table.columns]
    return [list(row) for row in zip(*cells, strict=True)]


def test_a_finished_run_shows_each_phase_its_estimate_and_share_of_peak() -> None:
    table = performance_table(METRICS)
    assert table is not None
    assert [c.header for c in table.columns] == [
        "phase", "seconds", "estimated s", "precision", "GFLOP", "GFLOP/s", "% of peak"]
    assert rows(table) == [
        ["load", "6.2", "", "", "", "", ""],
        ["examples", "0.4", "", "", "", "", ""],
        ["evaluate source", "30.6", "30.2", "bf16", "268.1", "8.8", "2.2%"],
        ["train", "101.3", "99.0", "bf16", "4021.5", "39.7", "9.9%"],
        ["evaluate tuned", "29.8", "29.9", "bf16", "268.1", "9.0", "2.2%"],
        ["save", "3.1", "", "", "", "", ""],
        # the estimate's fixed cost is one figure for three phases: compared with their sum
        ["fixed (load, examples, save)", "9.7", "9.1", "", "", "", ""],
    ]
    caption = str(table.caption)
    assert "peak fp32 151 GFLOP/s, bf16 403 GFLOP/s (cpu, 2 threads)" in caption
    assert "estimated from the measured throughput of earlier runs of this model size" in caption
    assert "took 171.4 s, estimated 168.2 s (+2%)" in caption
    assert "2.5 s of the load was paid once per worker process" in caption


def test_no_performance_section_no_table() -> None:
    assert performance_table(None) is None
    assert performance_table({"steps": 3}) is None
    assert performance_table({"performance": None}) is None


def test_an_older_run_shows_its_seconds_and_blanks_the_rest() -> None:
    """Before estimates and FLOP counts: phase timings only, no estimate row, no peak line."""
    old = {"performance": {"phases_s": {"load": 1.0, "train": 2.0}, "total_s": 3.0}}
    table = performance_table(old)
    assert table is not None
    assert rows(table) == [["load", "1.0", "", "", "", "", ""],
                           ["train", "2.0", "", "", "", "", ""]]
    assert str(table.caption) == "took 3.0 s"


def test_an_unmeasured_peak_leaves_the_fraction_unknown() -> None:
    metrics = copy.deepcopy(METRICS)
    utilization = metrics["performance"]["utilization"]
    utilization["peak_gflops"] = {}
    for phase in utilization["phases"].values():
        phase["peak_gflops"] = phase["fraction_of_peak"] = None
    utilization["phases"]["train"]["achieved_gflops"] = None  # no time passed
    metrics["performance"]["throughput"]["estimated"]["basis"] = "constants"
    table = performance_table(metrics)
    assert table is not None
    train = rows(table)[3]
    assert train == ["train", "101.3", "99.0", "bf16", "4021.5", "—", "—"]
    caption = str(table.caption)
    assert "no matmul peak measured on this host: % of peak unknown" in caption
    assert "estimated from fixed constants: no run of this model size measured yet" in caption


def test_a_server_string_is_not_markup() -> None:
    metrics = copy.deepcopy(METRICS)
    metrics["performance"]["utilization"]["phases"]["train"]["precision"] = "[red]bf16[/]"
    assert "[red]bf16[/]" in render(performance_table(metrics))


MEASURED = {
    "estimated_seconds": 168.2,
    "estimate": {"basis": "measured", "fixed_s": 9.1, "evaluate_source_s": 30.2, "train_s": 99.0,
                 "evaluate_tuned_s": 29.9, "source_vectors_cached": True, "host": "h1",
                 "samples": {"encode": 3, "train": 1, "fixed": 1},
                 "precision": {"encode": "bf16", "train": "bf16"}},
}


def test_a_measured_estimate_names_its_host_and_samples() -> None:
    line = estimate_line(MEASURED)
    assert line is not None
    assert line.plain == (
        "estimated 168 s from measurements on h1 (3 encode, 1 train, 1 fixed samples); source "
        "vectors cached (its evaluation only encodes the queries)  [fixed 9 s, evaluate source "
        "30 s, train 99 s, evaluate tuned 30 s]")


def test_a_constants_estimate_says_why() -> None:
    constants = {"estimated_seconds": 1143.0, "estimate": {
        "basis": "constants", "fixed_s": 20.0, "evaluate_source_s": 300.0, "train_s": 600.0,
        "evaluate_tuned_s": 223.0, "source_vectors_cached": False}}
    line = estimate_line(constants)
    assert line is not None
    assert line.plain.startswith(
        "estimated 1143 s from fixed constants (no run of this model size measured yet)  [")
    assert "cached" not in line.plain

    # a host that measured encoding but never training: not enough for a measured estimate
    partial = copy.deepcopy(constants)
    partial["estimate"] |= {"host": "h2", "samples": {"encode": 2}}
    line = estimate_line(partial)
    assert line is not None
    assert "from fixed constants (not enough measured yet: h2 has 2 encode samples)" in line.plain


def test_a_method_without_an_estimate_gets_no_line() -> None:
    assert estimate_line({"would_refuse": False}) is None
    assert estimate_line({"estimated_seconds": None}) is None
    line = estimate_line({"estimated_seconds": 42.0})  # a method that says no more
    assert line is not None and line.plain == "estimated 42 s"


# -- the commands, against a stand-in server answering with the wire shapes -----------------------
TASK = {
    "id": "t1", "status": "done", "embedding_model_id": "m1", "idempotency_key": None,
    "batch_id": None, "params": {}, "metadata": {}, "message_id": None,
    "progress": {"fraction": 1.0, "step": 3, "total_steps": 3, "message": "done"},
    "metrics": METRICS, "result_model_id": "m2", "detail": None, "attempts": 1,
    "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:03:00Z",
    "started_at": "2026-12-01T10:00:01Z", "finished_at": "2026-12-01T10:03:00Z",
    "heartbeat_at": None,
}
PREFLIGHT = {"embedding_model_id": "m1", "plugin_name": "sentence-transformers",
             "batch_id": None, "params": {}, "would_refuse": False, "reason": None, **MEASURED}


class _Answers(BaseHTTPRequestHandler):
    def _send(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/api/v1/fine-tuning/task/t1":
            self._send(TASK)
        else:
            self._send({"detail": f"no route {self.path}"}, 404)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        if self.path == "/api/v1/fine-tuning/task/preflight":
            self._send(PREFLIGHT)
        else:
            self._send({"detail": f"no route {self.path}"}, 404)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_task_show_prints_the_performance_table_after_the_report(url: str) -> None:
    result = CliRunner().invoke(cli, ["task", "show", "t1", "--url", url])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.index("result model") < out.index("Performance: seconds per phase")
    assert "fixed (load, examples, save)" in out and "took 171.4 s, estimated 168.2 s" in out

    as_json = CliRunner().invoke(cli, ["task", "show", "t1", "--url", url, "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["metrics"] == METRICS


def test_task_preflight_prints_the_estimate_line_after_its_fields(url: str) -> None:
    result = CliRunner().invoke(cli, ["task", "preflight", "m1", "--url", url])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.index("would_refuse") < out.index("estimated 168 s from measurements on h1")

    as_json = CliRunner().invoke(cli, ["task", "preflight", "m1", "--url", url, "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == PREFLIGHT
