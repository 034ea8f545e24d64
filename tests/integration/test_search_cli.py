"""`embtune task trials` against a live server: a search task's trials as a table and JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embtune.cli import app as cli
from tests.conftest import make_settings
from tests.support.backends import TEST_PLUGINS, Backend
from tests.support.live_server import live_server

pytestmark = pytest.mark.backends("sqlite-embedded")
CURVE = "tests.support.search_plugin:CurvePlugin"


@pytest.fixture
def url(backend: Backend, tmp_path: Path) -> Iterator[str]:
    settings = make_settings(backend, tmp_path / "data", plugins=[*TEST_PLUGINS, CURVE])
    with live_server(settings, run_worker=None) as base_url:
        yield base_url


def embtune(url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--url", url], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_task_trials_lists_the_search_trials(url: str) -> None:
    model = json.loads(embtune(url, "model", "register", "mini", "builtin:all-MiniLM-L6-v2",
                               "--plugin", "curve", "--json"))["id"]
    search = {"trials": 2, "pruner": "none",
              "space": {"learning_rate": {"type": "categorical", "choices": [1e-4, 1e-6]}}}
    followed = embtune(url, "task", "create", model, "--params-json",
                       json.dumps({"search": search}), "--follow", "--json")
    task = json.loads(followed.strip().splitlines()[-1])  # a snapshot a line, the last at the end
    assert task["status"] == "done"

    trials = json.loads(embtune(url, "task", "trials", task["id"], "--json"))
    assert [(t["number"], t["state"]) for t in trials] == [(0, "complete"), (1, "complete")]
    table = embtune(url, "task", "trials", task["id"])
    assert f"trials of task {task['id']}" in table
    for trial in trials:
        assert f"learning_rate={trial['params']['learning_rate']:.3g}" in table
        assert f"{trial['value']:.4f}" in table
