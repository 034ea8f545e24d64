"""`embtune reindex`, `embtune search` and `embtune model vectors` against a live server (SQLite
+ embedded broker, with its in-process worker)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from embtune.client import Client
from embtune.config import Settings
from tests.integration.test_cli import assert_one_error_line, embtune, ok_json, register
from tests.support.live_server import live_server, unused_port

pytestmark = pytest.mark.backends("sqlite-embedded")

ITEMS = [
    {"object_id": "scarf", "text": "red wool scarf"},
    {"object_id": "boots", "text": "black leather boots"},
    {"object_id": "tie", "text": "blue silk tie"},
    {"object_id": "shirt", "text": "white linen shirt"},
]


@pytest.fixture
def url(settings: Settings) -> Iterator[str]:
    with live_server(settings, run_worker=None) as base_url:
        yield base_url


def test_reindex_follow_search_and_download_vectors(url: str, tmp_path: Path) -> None:
    model_id = register(url)
    with Client(url) as api:
        api.upsert_items(ITEMS)

    result = embtune(url, "reindex", "create", model_id, "--sink-type", "parquet", "--follow")
    assert result.exit_code == 0, result.output
    assert "done" in result.stderr and "4/4 items" in result.stderr  # the bar's last frame
    task_id, = re.findall(r"reindex ([0-9a-f]{32}) pending", result.stdout)
    summary = re.sub(r"\s+", " ", result.stdout)
    for figure in ("mode full", "items 4", "copied 0", "deleted 0", "collection catalogue-",
                   "timings encode", f"parquet catalogue serves model {model_id}"):
        assert figure in summary, result.stdout

    listed = ok_json(embtune(url, "reindex", "list", "--json"))
    assert [(t["id"], t["status"], t["kind"]) for t in listed] == [(task_id, "done", "reindex")]
    shown = embtune(url, "reindex", "show", task_id)
    assert shown.exit_code == 0 and "parquet catalogue" in shown.stdout
    history = embtune(url, "reindex", "events", task_id)
    assert history.exit_code == 0 and "switch" in history.stdout
    assert_one_error_line(embtune(url, "reindex", "restart", task_id), 1, "is done")

    found = embtune(url, "search", "blue silk tie", "--model", model_id, "-k", "2")
    assert found.exit_code == 0, found.output
    rows = re.findall(r"│\s+(\d)\s+│\s+(\w+)\s+│\s+([\d.]+)\s+│", found.stdout)
    assert rows[0][:2] == ("1", "tie")
    assert len(rows) == 2 and f"model {model_id}, collection catalogue-" in found.stdout
    as_json = ok_json(embtune(url, "search", "red scarf", "--model", model_id, "--json"))
    assert as_json["hits"][0]["object_id"] == "scarf" and len(as_json["hits"]) == 4

    target = tmp_path / "vectors.parquet"
    saved = embtune(url, "model", "vectors", model_id, "-o", str(target))
    assert saved.exit_code == 0 and f"saved {target}" in saved.stdout
    table = pq.read_table(target)
    assert sorted(table.column("object_id").to_pylist()) == sorted(i["object_id"] for i in ITEMS)
    assert set(table.column("model_id").to_pylist()) == {model_id}


def test_refusals_are_one_line(url: str, tmp_path: Path) -> None:
    model_id = register(url)
    assert_one_error_line(embtune(url, "reindex", "create", "production"), 1,
                          "alias: alias 'production' not found")
    assert_one_error_line(embtune(url, "reindex", "create", model_id, "--sink-type", "parquet",
                                  "--sink-name", "bad name!"), 1, "sink.name:")
    assert_one_error_line(embtune(url, "reindex", "create", model_id, "--sink-type", "nope"),
                          1, "sink.type: unknown sink type 'nope'")
    assert_one_error_line(embtune(url, "reindex", "create", model_id, "--sink-name", "x"), 2,
                          "need --sink-type")
    assert_one_error_line(embtune(url, "search", "shoes"), 2, "exactly one of --alias")
    assert_one_error_line(embtune(url, "search", "shoes", "--model", model_id), 1,
                          "reindex it first")

    tuning = ok_json(embtune(url, "task", "create", model_id, "--json"))["id"]
    for verb in ("show", "events", "cancel", "restart"):
        assert_one_error_line(embtune(url, "reindex", verb, tuning), 1, "not found")

    out = tmp_path / "out"
    out.mkdir()
    target = out / "vectors.parquet"
    assert_one_error_line(embtune(url, "model", "vectors", model_id, "-o", str(target)), 1,
                          "has no Parquet vectors")
    down = f"http://127.0.0.1:{unused_port()}"
    assert_one_error_line(embtune(down, "model", "vectors", model_id, "-o", str(target)), 1,
                          "cannot reach")
    assert list(out.iterdir()) == []  # no partial file left behind


def test_reindex_create_splits_into_shards(url: str) -> None:
    model_id = register(url)
    with Client(url) as api:
        api.upsert_items(ITEMS)
    result = embtune(url, "reindex", "create", model_id, "--sink-type", "parquet",
                     "--shards", "2", "--follow")
    assert result.exit_code == 0, result.output
    task, = ok_json(embtune(url, "reindex", "list", "--json"))
    assert task["status"] == "done", task
    assert task["metrics"]["shards"] == 2 and sum(task["metrics"]["shard_items"]) == 4
    refused = embtune(url, "reindex", "create", model_id, "--shards", "2", "--incremental")
    assert refused.exit_code == 1 and "shards" in refused.stderr
