"""`embtune items import` against a live server over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from embtune.cli import app as cli
from embtune.config import Settings
from tests.support.live_server import live_server, unused_port

pytestmark = pytest.mark.backends("sqlite-embedded")


@pytest.fixture
def server_url(settings: Settings) -> Iterator[str]:
    with live_server(settings) as url:
        yield url


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    docs = [{"_id": f"doc{i}", "title": f"Title {i}" if i % 2 else "", "text": f"body {i}"}
            for i in range(23)]
    docs.append({"_id": "empty", "title": "", "text": ""})
    docs.append({"_id": 99, "title": "Only a title", "text": "", "metadata": {"url": "u"}})
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    return path


def run_import(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["items", "import", *args])
    return result.exit_code, result.output


def test_import_upserts_the_corpus_and_can_be_rerun(server_url: str, corpus: Path) -> None:
    code, output = run_import(str(corpus), "--url", server_url, "--batch-size", "10")
    assert code == 0, output
    assert "24 new, 0 updated" in output and "1 skipped" in output
    code, output = run_import(str(corpus), "--url", server_url, "--batch-size", "10")
    assert code == 0, output
    assert "0 new, 24 updated" in output

    with httpx.Client(base_url=server_url) as client:
        assert client.get("/api/v1/items").headers["X-Total-Count"] == "24"
        assert client.get("/api/v1/items/doc1").json()["text"] == "Title 1. body 1"
        assert client.get("/api/v1/items/doc2").json()["text"] == "body 2"
        titled = client.get("/api/v1/items/99").json()
        assert (titled["text"], titled["meta"]) == ("Only a title", {"url": "u"})
        assert client.get("/api/v1/items/empty").status_code == 404


def test_import_errors_are_one_line_and_fail(
    server_url: str, corpus: Path, tmp_path: Path
) -> None:
    code, output = run_import(str(tmp_path / "missing.jsonl"), "--url", server_url)
    assert code == 1 and "no such file" in output and len(output.strip().splitlines()) == 1

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"_id": "a", "text": "fine"}\n{not json\n')
    code, output = run_import(str(broken), "--url", server_url)
    assert code == 1 and "line 2" in output and len(output.strip().splitlines()) == 1

    too_long = tmp_path / "long.jsonl"
    too_long.write_text(json.dumps({"_id": "big", "text": "x" * 100_001}) + "\n")
    code, output = run_import(str(too_long), "--url", server_url)
    assert code == 1 and "line 1: text" in output and len(output.strip().splitlines()) == 1

    code, output = run_import(str(corpus), "--url", f"http://127.0.0.1:{unused_port()}")
    assert code == 1 and "cannot reach" in output and len(output.strip().splitlines()) == 1
