"""The `embtune` command line against a live server over HTTP (SQLite + embedded broker, with the
test plugins `sleepy` and `click-counter`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from embtune.cli import app as cli
from embtune.cli.clickstream import local_model_source
from embtune.cli.common import parse_params
from embtune.client import Client
from embtune.config import Settings
from tests.support.live_server import live_server, unused_port

pytestmark = pytest.mark.backends("sqlite-embedded")

BUILTIN = "builtin:all-MiniLM-L6-v2"
SLOW = ["--param", "steps=1000", "--param", "step_seconds=0.05"]


@pytest.fixture
def url(settings: Settings) -> Iterator[str]:
    with live_server(settings, run_worker=None) as base_url:
        yield base_url


def embtune(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--url", url])


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def register(url: str, plugin: str = "sleepy", name: str = "mini") -> str:
    return ok_json(embtune(url, "model", "register", name, BUILTIN, "--plugin", plugin, "--json"))[
        "id"
    ]


def create(url: str, model_id: str, *args: str) -> str:
    return ok_json(embtune(url, "task", "create", model_id, *args, "--json"))["id"]


def assert_one_error_line(
    result: Result, code: int, *needles: str, after_progress: bool = False
) -> None:
    """The error is one `error: …` line; `after_progress`: below a progress bar's last frame."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    if after_progress:
        lines = lines[1:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_help_runs_as_a_module() -> None:
    done = subprocess.run([sys.executable, "-m", "embtune.cli", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for group in ("serve", "worker", "demo", "db", "model", "items", "clickstream", "task"):
        assert group in done.stdout


def test_model_register_list_and_show(url: str) -> None:
    result = embtune(url, "model", "register", "base [v1]", BUILTIN, "--plugin", "sleepy")
    assert result.exit_code == 0, result.output
    assert "base [v1]" in result.stdout  # a name is text, never Rich markup
    model_id = re.search(r"\b[0-9a-f]{32}\b", result.stdout).group()  # type: ignore[union-attr]
    other = register(url, name="other")

    listing = embtune(url, "model", "list")
    assert listing.exit_code == 0 and model_id in listing.stdout and other in listing.stdout
    assert "1-2 of 2" in listing.stdout
    assert [m["id"] for m in ok_json(embtune(url, "model", "list", "--json"))] == [other, model_id]
    assert [m["id"] for m in ok_json(embtune(url, "model", "list", "--limit", "1", "--json"))] == [
        other
    ]

    shown = embtune(url, "model", "show", model_id)
    assert shown.exit_code == 0 and "sleepy" in shown.stdout and BUILTIN in shown.stdout
    assert ok_json(embtune(url, "model", "show", model_id, "--json"))["name"] == "base [v1]"


def test_task_create_follow_ends_done_with_exit_0(url: str) -> None:
    model_id = register(url)
    result = embtune(url, "task", "create", model_id, "--param", "steps=3", "--follow")
    assert result.exit_code == 0, result.output
    assert "done" in result.stderr and "3/3" in result.stderr  # the progress bar's last frame
    task_id, = re.findall(r"task ([0-9a-f]{32}) pending", result.stdout)
    task = ok_json(embtune(url, "task", "show", task_id, "--json"))
    assert task["status"] == "done" and f"new model {task['result_model_id']}" in result.stdout

    again = embtune(url, "task", "follow", task_id)
    assert again.exit_code == 0 and "done" in again.stdout
    shown = embtune(url, "task", "show", task_id)
    assert shown.exit_code == 0 and task["result_model_id"] in shown.stdout


def test_a_tuned_model_downloads_and_simulate_can_rank_with_it(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = create(url, register(url))
    assert embtune(url, "task", "follow", task_id).exit_code == 0
    tuned = ok_json(embtune(url, "task", "show", task_id, "--json"))["result_model_id"]
    monkeypatch.chdir(tmp_path)
    result = embtune(url, "model", "download", tuned)
    assert result.exit_code == 0, result.output
    with tarfile.open(tmp_path / f"embtune-model-{tuned}.tar.gz") as archive:
        assert any(name.endswith("weights.txt") for name in archive.getnames())
    # A source that is not on this machine: `clickstream simulate` fetches it over the API.
    with Client(url) as api, ExitStack() as stack:
        local = local_model_source(api, "/elsewhere/models/x", tuned, stack)
        assert (Path(local) / "weights.txt").read_text().startswith("tuned from")


def test_follow_of_a_failed_task_exits_1(url: str) -> None:
    task_id = create(url, register(url), "--param", "fail=true")
    result = embtune(url, "task", "follow", task_id)
    assert_one_error_line(result, 1, "ended failed", "failed on purpose", after_progress=True)


def test_task_list_filters_by_status_and_model(url: str) -> None:
    first, second = register(url, name="a"), register(url, name="b")
    canceled = create(url, first, *SLOW)
    assert ok_json(embtune(url, "task", "cancel", canceled, "--json"))["status"] == "canceled"
    done = create(url, second)
    assert embtune(url, "task", "follow", done).exit_code == 0

    def ids(*args: str) -> list[str]:
        return [t["id"] for t in ok_json(embtune(url, "task", "list", *args, "--json"))]

    assert ids() == [done, canceled]
    assert ids("--status", "CANCELED") == [canceled]
    assert ids("--model", second) == [done]
    assert ids("--status", "done", "--model", first) == []
    assert ids("--offset", "1", "--limit", "1") == [canceled]
    table = embtune(url, "task", "list", "--status", "canceled")
    assert canceled in table.stdout and done not in table.stdout and "1-1 of 1" in table.stdout
    assert_one_error_line(embtune(url, "task", "list", "--status", "bogus"), 1, "status",
                          "valid: pending")


def test_cancel_restart_and_events(url: str) -> None:
    model_id = register(url)
    task_id = create(url, model_id, *SLOW)
    result = embtune(url, "task", "cancel", task_id)
    assert result.exit_code == 0 and f"task {task_id} canceled" in result.stdout
    assert embtune(url, "task", "cancel", task_id).exit_code == 0  # canceling twice is harmless
    restarted = ok_json(embtune(url, "task", "restart", task_id, "--json"))
    assert restarted["status"] in ("pending", "processing")
    assert embtune(url, "task", "cancel", task_id).exit_code == 0

    transitions = [(e["from_status"], e["to_status"])
                   for e in ok_json(embtune(url, "task", "events", task_id, "--json"))
                   if e["kind"] == "transition"]
    assert transitions[0] == (None, "pending")
    assert ("canceled", "pending") in transitions and transitions[-1][1] == "canceled"
    table = embtune(url, "task", "events", task_id)
    assert table.exit_code == 0 and "canceled → pending" in table.stdout

    finished = create(url, model_id)
    assert embtune(url, "task", "follow", finished).exit_code == 0
    assert_one_error_line(embtune(url, "task", "cancel", finished), 1, "cannot be canceled")


def test_an_api_error_is_one_line_and_exit_1(url: str) -> None:
    for args in (["task", "show", "nope"], ["task", "events", "nope"],
                 ["model", "show", "nope"], ["task", "create", "nope"]):
        result = embtune(url, *args)
        assert_one_error_line(result, 1, "'nope' not found")
        assert result.stdout == ""


def test_server_down_says_cannot_reach(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{unused_port()}"
    for args in (["task", "list"], ["model", "register", "m", BUILTIN],
                 ["clickstream", "release"]):
        assert_one_error_line(embtune(down, *args), 1, f"cannot reach embtune at {down}")
    target = tmp_path / "model.tar.gz"
    result = embtune(down, "model", "download", "m", "-o", str(target))
    assert_one_error_line(result, 1, "cannot reach")
    assert list(tmp_path.iterdir()) == []  # no partial archive left behind


def test_clickstream_import_is_rerunnable_and_release_freezes_it(
    url: str, tmp_path: Path
) -> None:
    sessions = [
        {"session_id": "s1", "search_query": "red kicks",
         "search_results": [{"object_id": "d1"}, {"object_id": "d2"}, {"object_id": "d3"}],
         "clicks": ["d2", "d3"]},
        {"session_id": "s2", "search_query": "brolly", "search_results": [{"object_id": "d4"}],
         "irrelevant": True, "user_id": "u1"},
        {"session_id": "s3", "search_query": "cans", "search_results": []},
    ]
    path = tmp_path / "sessions.jsonl"
    path.write_text("\n".join(json.dumps(s) for s in sessions) + "\n\n")

    result = embtune(url, "clickstream", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "3 sessions" in result.stdout and "(3 new), 2 clicks (2 new), 1 marked" in result.stdout
    again = ok_json(embtune(url, "clickstream", "import", str(path), "--json"))
    assert again == {"sessions": 3, "new_sessions": 0, "repeated_sessions": 3, "conflicts": 0,
                     "rejected": 0, "clicks": 2, "new_clicks": 0, "irrelevant": 1}

    batch = ok_json(embtune(url, "clickstream", "release", "--json"))
    assert (batch["status"], batch["sessions_count"], batch["clicks_count"],
            batch["irrelevant_count"]) == ("released", 3, 2, 1)
    assert embtune(url, "clickstream", "import", str(path)).exit_code == 0  # still re-runnable
    shown = embtune(url, "clickstream", "batch", batch["id"])
    assert shown.exit_code == 0 and "released" in shown.stdout
    assert_one_error_line(embtune(url, "clickstream", "release"), 1, "batch is empty")

    counter = register(url, plugin="click-counter")
    trained = embtune(url, "task", "create", counter, "--batch", batch["id"], "--follow")
    assert trained.exit_code == 0, trained.output
    assert '"clicks": 2' in trained.stdout and '"sessions": ["s1", "s2", "s3"]' in trained.stdout


def test_clickstream_import_names_the_bad_line(url: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"session_id": "s1", "search_query": "q", "search_results": [],
                    "clicks": []}) + "\n"
        + json.dumps({"session_id": "s2", "search_query": "q",
                      "search_results": [{"object_id": "d1"}], "clicks": ["elsewhere"]}) + "\n"
    )
    result = embtune(url, "clickstream", "import", str(path))
    assert_one_error_line(result, 1, "bad.jsonl: line 2: clicks.0.object_id")
    path.write_text('{"search_query": "no id"}\n')
    assert_one_error_line(embtune(url, "clickstream", "import", str(path)), 1, "line 1",
                          "session_id")


def test_param_values_are_read_as_json_else_text() -> None:
    params = parse_params(
        ["steps=3", "lr=1e-4", "ratio=.5", "fail=false", "shuffle=True", "name=my model",
         "quoted=\"3\"", "none=null", "layers=[1, 2]", "expr=a=b", "nan=NaN"],
        params_json='{"steps": 1, "keep": "yes"}',
    )
    assert params == {
        "steps": 3, "lr": 1e-4, "ratio": 0.5, "fail": False, "shuffle": True,
        "name": "my model", "quoted": "3", "none": None, "layers": [1, 2], "expr": "a=b",
        "nan": "NaN", "keep": "yes",
    }
    assert type(params["steps"]) is int and type(params["lr"]) is float


def test_params_reach_the_server_typed_and_bad_ones_name_the_field(url: str) -> None:
    model_id = register(url)
    report = ok_json(embtune(url, "task", "preflight", model_id, "-p", "steps=2",
                             "--params-json", '{"step_seconds": 0.5, "steps": 9}', "--json"))
    assert report["params"]["steps"] == 2 and report["params"]["step_seconds"] == 0.5

    assert_one_error_line(embtune(url, "task", "create", model_id, "--param", "steps=many"), 1,
                          "params.steps")
    assert_one_error_line(embtune(url, "task", "preflight", model_id, "-p", "colour=red"), 1,
                          "params.colour")
    assert_one_error_line(embtune(url, "task", "create", model_id, "--param", "steps"), 2,
                          "expected KEY=VALUE")
    assert_one_error_line(embtune(url, "task", "create", model_id, "--params-json", "[1]"), 2,
                          "--params-json")
    assert ok_json(embtune(url, "task", "list", "--json")) == []  # nothing was created


def test_simulate_posts_sessions_ranked_by_the_models_source(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": f"doc {i}"}) + "\n" for i in range(4)))
    (beir / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n" for i in range(3)))
    (beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td1\t1\n")
    ranked_with: list[str] = []

    def fake_top_k(source: str, queries: dict[str, str], corpus: dict[str, str], k: int,
                   max_seq_length: int, on_progress: Any = None) -> dict[str, list[str]]:
        ranked_with.append(source)  # the real one loads the model: seconds of torch
        return {qid: sorted(corpus)[:k] for qid in queries}

    monkeypatch.setattr("embtune.demo.simulate.top_k", fake_top_k)
    model_id = register(url)
    report = ok_json(embtune(url, "clickstream", "simulate", "--beir", str(beir),
                             "--model-id", model_id, "--sessions-per-query", "2",
                             "--top-k", "3", "--json"))
    assert ranked_with == [BUILTIN]
    assert (report["queries"], report["sessions"]) == (2, 4)  # q2 has no qrels
    with Client(url) as api:
        session = api.get_session("sim-train-q1-1")
    assert [r["object_id"] for r in session["search_results"]] == ["d0", "d1", "d2"]

    table = embtune(url, "clickstream", "simulate", "--beir", str(beir), "--limit", "1")
    assert_one_error_line(table, 1, "sim-train-q0-0", "different body")  # other top-k shown
    table = embtune(url, "clickstream", "simulate", "--beir", str(beir), "--limit", "1",
                    "--prefix", "again")
    assert table.exit_code == 0 and "sessions with clicks" in table.stdout, table.output
    assert_one_error_line(
        embtune(url, "clickstream", "simulate", "--beir", str(beir), "--split", "test"), 2,
        "qrels/test.tsv")


def test_demo_runs_run_demo_and_refuses_to_wipe_foreign_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_run_demo(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return {"status": "done"}

    monkeypatch.setattr("embtune.demo.run.run_demo", fake_run_demo)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["demo", "--limit", "5", "-p", "epochs=1"])
    assert result.exit_code == 0, result.output
    assert calls[0]["data_dir"] == Path(".embtune/demo") and calls[0]["limit"] == 5
    assert calls[0]["keep_serving"] is False  # stdout is not a terminal here
    assert calls[0]["params"] == {"epochs": 1}

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    result = CliRunner().invoke(cli, ["demo", "--data-dir", str(precious)])
    assert_one_error_line(result, 2, "refusing to wipe")
    assert len(calls) == 1
