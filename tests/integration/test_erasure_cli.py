"""`embtune clickstream erase-user`, `embtune clickstream prune` and `embtune audit list`
against a live server over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from embtune.cli import app as cli
from embtune.config import Settings
from tests.support.live_server import live_server

pytestmark = pytest.mark.backends("sqlite-embedded")


@pytest.fixture
def server_url(settings: Settings) -> Iterator[str]:
    with live_server(settings) as url:
        yield url


def run(*args: str, answer: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=answer)
    return result.exit_code, result.output


def test_erase_user_asks_first_then_erases_and_the_audit_lists_it(server_url: str) -> None:
    with httpx.Client(base_url=server_url) as client:
        body = {"session_id": "s1", "search_query": "q", "user_id": "u1",
                "search_results": [{"object_id": "a"}]}
        assert client.post("/api/v1/clickstream/session", json=body).status_code == 201

    code, output = run("clickstream", "erase-user", "u1", "--url", server_url, answer="n\n")
    assert code == 1 and "Aborted" in output
    code, output = run("clickstream", "erase-user", "u1", "--url", server_url, answer="y\n")
    assert code == 0, output
    assert "erased 1 sessions, 1 shown results and 0 events" in output
    code, output = run("clickstream", "erase-user", "u1", "--yes", "--json", "--url", server_url)
    assert code == 0 and json.loads(output) == {"sessions": 0, "results": 0, "events": 0}

    code, output = run("audit", "list", "--json", "--url", server_url)
    events = json.loads(output)
    assert [e["action"] for e in events] == ["erase_user", "erase_user"]
    assert [e["detail"]["sessions"] for e in events] == [0, 1]
    code, output = run("audit", "list", "--url", server_url)
    assert code == 0 and "erase_user" in output and "u1" not in output


def test_prune_says_when_retention_is_off(server_url: str) -> None:
    code, output = run("clickstream", "prune", "--url", server_url)
    assert code == 0, output
    assert "retention is off" in output
    code, output = run("clickstream", "prune", "--json", "--url", server_url)
    assert json.loads(output)["batches"] == 0
