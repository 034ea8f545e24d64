"""`embtune alias` against a live server, and `embtune model download` through an alias."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from embtune.cli import app as cli
from embtune.config import Settings
from tests.support.live_server import live_server

pytestmark = pytest.mark.backends("sqlite-embedded")


@pytest.fixture
def url(settings: Settings) -> Iterator[str]:
    with live_server(settings, run_worker=False) as base_url:
        yield base_url


def embtune(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--url", url])


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def register(url: str, name: str) -> str:
    return ok_json(embtune(url, "model", "register", name, "builtin:all-MiniLM-L6-v2",
                           "--plugin", "sleepy", "--json"))["id"]


def test_set_list_show_rollback(url: str) -> None:
    first, second = register(url, "a"), register(url, "b")
    created = ok_json(embtune(url, "alias", "set", "production", first, "--reason", "launch",
                              "--json"))
    assert (created["model_id"], created["version"]) == (first, 1)
    moved = embtune(url, "alias", "set", "production", second)
    assert moved.exit_code == 0, moved.output
    assert second in moved.stdout and "history" in moved.stdout

    listed = embtune(url, "alias", "list")
    assert listed.exit_code == 0 and "production" in listed.stdout and "1-1 of 1" in listed.stdout
    shown = embtune(url, "alias", "show", "production")
    assert shown.exit_code == 0 and "launch" in shown.stdout and "set" in shown.stdout

    back = ok_json(embtune(url, "alias", "rollback", "production", "--reason", "bad", "--json"))
    assert back["model_id"] == first and back["history"][0]["action"] == "rollback"
    refused = embtune(url, "alias", "rollback", "production")
    assert refused.exit_code == 1 and "no earlier model" in refused.stderr
    stale = embtune(url, "alias", "set", "production", second, "--expected-version", "1")
    assert stale.exit_code == 1 and "expected 1" in stale.stderr
    unknown = embtune(url, "alias", "show", "nope")
    assert unknown.exit_code == 1 and "'nope' not found" in unknown.stderr
    bad = embtune(url, "alias", "set", "a b", first)
    assert bad.exit_code == 1 and "name" in bad.stderr


def test_model_download_takes_an_alias(url: str, tmp_path: Path) -> None:
    model = register(url, "a")
    assert embtune(url, "alias", "set", "production", model).exit_code == 0
    target = tmp_path / "production.tar.gz"
    result = embtune(url, "model", "download", "production", "-o", str(target))
    assert result.exit_code == 0, result.output
    with tarfile.open(target) as tar:
        assert {name.split("/")[0] for name in tar.getnames()} == {model}


def test_an_alias_names_its_sink_from_the_cli(url: str) -> None:
    model = register(url, "a")
    created = ok_json(embtune(url, "alias", "set", "live", model, "--sink",
                              '{"type": "parquet", "name": "shop"}', "--json"))
    assert created["sink"]["type"] == "parquet" and created["sink"]["name"] == "shop"
    # no worker here: the reindex the move created waits, and the alias says so
    assert created["serving"]["state"] == "reindexing"
    bad = embtune(url, "alias", "sink", "live", '{"type": "parquet", "name": "no spaces"}')
    assert bad.exit_code == 1 and "sink.name" in bad.stderr
    assert embtune(url, "alias", "sink", "live", "[1]").exit_code == 1
    cleared = ok_json(embtune(url, "alias", "sink", "live", "none", "--json"))
    assert cleared["sink"] is None and cleared["serving"]["state"] == "no_sink"
