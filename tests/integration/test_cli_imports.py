"""`embtune clickstream import` (bulk, client-side), `--server-side` on it and on `embtune items
import`, and `embtune imports …`, against a live server (SQLite + embedded broker)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from embtune.client import Client
from embtune.config import Settings
from tests.integration.test_cli import assert_one_error_line, embtune, ok_json
from tests.support.live_server import live_server

pytestmark = pytest.mark.backends("sqlite-embedded")


def session(n: int, **extra: Any) -> dict[str, Any]:
    return {"session_id": f"s{n}", "search_query": f"query {n}",
            "search_results": [{"object_id": "d1"}, {"object_id": "d2"}], **extra}


def write_lines(path: Path, lines: list[Any]) -> Path:
    """Objects as JSON lines; strings as they are (a broken line, a blank one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines))
    return path


@pytest.fixture
def url(settings: Settings) -> Iterator[str]:
    """A server with its in-process worker, which runs the import tasks."""
    with live_server(settings, run_worker=None) as base_url:
        yield base_url


# -- client-side: bulk requests ------------------------------------------------------------------
def test_bulk_import_reports_bad_lines_by_number_and_stores_the_rest(
    url: str, tmp_path: Path
) -> None:
    dup = {"session_id": "s4", "search_query": "q",
           "search_results": [{"object_id": "d1"}, {"object_id": "d1"}]}
    path = write_lines(tmp_path / "mixed.jsonl", [
        session(1, clicks=["d2"]), session(2, irrelevant=True), "{not json", "",
        dup, session(5, clicks=["d1", "d2"]), "[1, 2]", session(8),
    ])
    # chunks of 2 rows: line numbers must survive the chunking
    result = embtune(url, "clickstream", "import", str(path), "--batch-size", "2")
    assert result.exit_code == 1, result.output  # some lines were not stored
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 3, result.stderr
    assert errors[0].startswith("error: mixed.jsonl: line 3: not valid JSON")
    assert errors[1].startswith("error: mixed.jsonl: line 5: search_results.1.object_id: ")
    assert "duplicate object_id" in errors[1]
    assert errors[2] == "error: mixed.jsonl: line 7: expected a JSON object (a session)"
    assert ("imported 4 sessions from mixed.jsonl (4 new), 3 clicks (3 new), 1 marked "
            "irrelevant; 0 repeated, 0 in conflict, 3 rejected") in result.stdout

    with Client(url) as api:
        batch = api.get_batch(api.list_batches().items[0].id)
    assert (batch["sessions_count"], batch["clicks_count"], batch["irrelevant_count"]) == (
        4, 3, 1)


def test_bulk_import_rerun_is_all_repeats_and_a_changed_session_conflicts(
    url: str, tmp_path: Path
) -> None:
    rows = [session(n, clicks=["d1"]) for n in range(1, 6)]
    path = write_lines(tmp_path / "sessions.jsonl", rows)
    first = ok_json(embtune(url, "clickstream", "import", str(path), "--json"))
    assert first == {"sessions": 5, "new_sessions": 5, "repeated_sessions": 0, "conflicts": 0,
                     "rejected": 0, "clicks": 5, "new_clicks": 5, "irrelevant": 0}
    again = ok_json(embtune(url, "clickstream", "import", str(path), "--json",
                            "--batch-size", "3"))
    assert again == {**first, "new_sessions": 0, "repeated_sessions": 5, "new_clicks": 0}

    rows[3]["search_query"] = "another query"  # line 4: same id, another body
    write_lines(path, rows)
    result = embtune(url, "clickstream", "import", str(path))
    assert_one_error_line(result, 1, "sessions.jsonl: line 4: ")
    assert "4 repeated, 1 in conflict, 0 rejected" in result.stdout


def test_client_side_refusals_are_usage_errors(url: str, tmp_path: Path) -> None:
    assert_one_error_line(embtune(url, "clickstream", "import", "s3://bucket/x.jsonl"), 2,
                          "add --server-side")
    path = write_lines(tmp_path / "x.parquet", [])
    assert_one_error_line(embtune(url, "clickstream", "import", str(path), "--format",
                                  "parquet"), 2, "needs --server-side")
    assert_one_error_line(embtune(url, "items", "import", "gs://b/items.ndjson"), 2,
                          "need --server-side")
    assert_one_error_line(embtune(url, "clickstream", "import", str(tmp_path / "none.jsonl")),
                          1, "no such file")


# -- server-side: import tasks -------------------------------------------------------------------
def test_server_side_import_follows_the_task_and_prints_its_counts(
    url: str, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = settings.data_dir / "exports"
    write_lines(data / "good.ndjson", [session(n, clicks=["d2"]) for n in range(1, 4)])
    monkeypatch.chdir(data)  # a relative path: the CLI sends it absolute
    result = embtune(url, "clickstream", "import", "good.ndjson", "--server-side")
    assert result.exit_code == 0, result.output
    task_id = re.findall(r"import ([0-9a-f]{32}) pending: sessions from", result.stdout)[0]
    assert f"sessions from {data / 'good.ndjson'}" in result.stdout
    assert "done" in result.stderr and "3 rows" in result.stderr  # the bar's last frame
    summary = re.sub(r"\s+", " ", result.stdout)
    assert (f"import {task_id} done: 3 rows from {data / 'good.ndjson'}: 3 new, 0 repeated, "
            "0 in conflict, 0 rejected") in summary
    for figure in ("rows 3", "chunks 1", "accepted 3", "rejected 0", "resumed from row 0"):
        assert figure in summary, result.stdout

    listed = ok_json(embtune(url, "imports", "list", "--json"))
    assert [(t["id"], t["status"], t["kind"], t["data_kind"], t["format"]) for t in listed] == [
        (task_id, "done", "import", "sessions", "ndjson")]
    table = embtune(url, "imports", "list")
    assert table.exit_code == 0 and task_id in table.stdout and "3 new" in table.stdout
    shown = embtune(url, "imports", "show", task_id)
    assert shown.exit_code == 0 and "good.ndjson" in shown.stdout and "ndjson" in shown.stdout
    followed = [json.loads(line) for line in embtune(
        url, "imports", "show", task_id, "--follow", "--json").stdout.splitlines()]
    assert followed[-1]["status"] == "done" and followed[-1]["metrics"]["accepted"] == 3
    history = embtune(url, "imports", "events", task_id)
    assert history.exit_code == 0 and "processing → done" in history.stdout
    assert_one_error_line(embtune(url, "imports", "restart", task_id), 1)
    target = tmp_path / "none.ndjson"
    saved = embtune(url, "imports", "rejections", task_id, "-o", str(target))
    assert saved.exit_code == 0 and "(0 rejected rows)" in saved.stdout
    assert target.read_text() == ""

    with Client(url) as api:  # the same file again: a new task, every row a repeat
        again = api.create_import(str(data / "good.ndjson"), kind="sessions")
    result = embtune(url, "imports", "show", again.id, "--follow")
    assert result.exit_code == 0, result.output
    assert "0 new, 3 repeated" in result.stdout


def test_server_side_rejected_rows_fail_the_command_and_are_downloadable(
    url: str, settings: Settings, tmp_path: Path
) -> None:
    path = write_lines(settings.data_dir / "bad.ndjson",
                       [session(1), "{oops", {"session_id": "s3"}, session(4)])
    result = embtune(url, "clickstream", "import", str(path), "--server-side")
    assert result.exit_code == 1, result.output
    task_id = re.findall(r"import ([0-9a-f]{32}) done", result.stdout)[0]
    assert "2 new, 0 repeated, 0 in conflict, 2 rejected" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: 2 rows not stored: `embtune imports rejections {task_id} -o FILE` lists them "
        "with their reasons")

    target = tmp_path / "rejected.ndjson"
    saved = embtune(url, "imports", "rejections", task_id, "-o", str(target))
    assert saved.exit_code == 0 and f"saved {target} (2 rejected rows)" in saved.stdout
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [row["row"] for row in rows] == [2, 3]
    assert rows[1]["field"] == "search_query" or "search_query" in rows[1]["reason"]
    assert not list(tmp_path.glob(".*.part"))


def test_server_side_items_import(url: str, settings: Settings) -> None:
    items = [{"object_id": f"i{n}", "text": f"item number {n}"} for n in range(4)]
    path = write_lines(settings.data_dir / "items.ndjson", items)
    result = embtune(url, "items", "import", str(path), "--server-side")
    assert result.exit_code == 0, result.output
    assert "4 rows" in result.stdout and "4 new or updated, 0 unchanged" in result.stdout
    with Client(url) as api:
        assert api.get_item("i3")["text"] == "item number 3"


def test_no_follow_queues_the_task_then_cancel_and_restart(
    settings: Settings, tmp_path: Path
) -> None:
    path = write_lines(settings.data_dir / "later.ndjson", [session(1)])
    with live_server(settings, run_worker=False) as url:  # no worker: the task waits
        task = ok_json(embtune(url, "clickstream", "import", str(path), "--server-side",
                               "--no-follow", "--json"))
        assert (task["status"], task["url"], task["data_kind"]) == ("pending", str(path),
                                                                     "sessions")
        queued = embtune(url, "items", "import", str(path), "--server-side", "--no-follow",
                         "--format", "ndjson")
        assert queued.exit_code == 0 and "pending: items from" in queued.stdout
        shown = embtune(url, "imports", "show", task["id"])
        assert "waiting for a worker" in shown.stdout
        canceled = embtune(url, "imports", "cancel", task["id"])
        assert canceled.exit_code == 0 and f"import {task['id']} canceled" in canceled.stdout
        restarted = ok_json(embtune(url, "imports", "restart", task["id"], "--json"))
        assert restarted["status"] == "pending"
        listed = ok_json(embtune(url, "imports", "list", "--status", "pending", "--json"))
        assert len(listed) == 2
        for verb in ("show", "events", "cancel", "restart"):
            assert_one_error_line(embtune(url, "imports", verb, "0" * 32), 1, "not found")
        refused = embtune(url, "clickstream", "import", str(tmp_path / "outside.ndjson"),
                          "--server-side")
        assert refused.exit_code == 1 and "url" in refused.stderr


def test_a_refused_request_stops_the_import_with_a_hint(
    settings: Settings, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "five.jsonl", [session(n) for n in range(1, 6)])
    with live_server(settings.model_copy(update={"bulk_max_rows": 2})) as url:
        result = embtune(url, "clickstream", "import", str(path), "--batch-size", "2")
        assert result.exit_code == 0 and "(5 new)" in result.stdout, result.output
        assert_one_error_line(embtune(url, "clickstream", "import", str(path), "--batch-size",
                                      "3"), 1, "five.jsonl: lines 1-3: ",
                              "a smaller --batch-size may pass", "running the import again")
