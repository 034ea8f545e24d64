"""`embtune evalset` and `embtune model evalset` against a live server over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from embtune.cli import app as cli
from embtune.config import Settings
from tests.conftest import make_settings
from tests.support.backends import Backend
from tests.support.live_server import live_server, unused_port

pytestmark = pytest.mark.backends("sqlite-embedded")


@pytest.fixture
def server_url(settings: Settings) -> Iterator[str]:
    with live_server(settings) as url:
        with httpx.Client(base_url=url) as client:
            items = [{"object_id": f"doc{i}", "text": f"document {i}"} for i in range(8)]
            assert client.post("/api/v1/items", json={"items": items}).status_code == 200
        yield url


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    """Three judged test queries (one with nothing relevant) and one of another split."""
    root = tmp_path / "scifact"
    (root / "qrels").mkdir(parents=True)
    queries = [{"_id": q, "text": f"question {q}"} for q in ("q1", "q2", "q3", "q9")]
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        "q2\tdoc1\t1\n"
        "q1\tdoc2\t2\nq1\tdoc3\t1\nq1\tdoc4\t0\n"
        "q3\tdoc5\t0\n"
    )
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq9\tdoc6\t1\n")
    return root


def jsonl_lines() -> list[dict[str, object]]:
    return [
        {"query_id": "a", "text": "first", "relevant": [{"object_id": "doc1", "grade": 3},
                                                        {"object_id": "doc2", "grade": 0}]},
        {"query_id": "b", "text": "second", "relevant": [{"object_id": "doc7", "grade": 1}]},
    ]


def write_jsonl(path: Path, lines: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_beir_and_jsonl_sets_import_list_show_and_export(
    server_url: str, beir_dir: Path, tmp_path: Path
) -> None:
    code, output = run("evalset", "import", "--beir", str(beir_dir), "--url", server_url)
    assert code == 0, output
    assert "imported set 'scifact-test'" in output
    assert "2 queries, 4 judgements; 1 skipped (no item graded above 0)" in output

    source = write_jsonl(tmp_path / "golden.jsonl", jsonl_lines())
    code, output = run("evalset", "import", "--jsonl", str(source), "--name", "golden",
                       "--description", "by hand", "--url", server_url)
    assert code == 0, output
    assert "imported set 'golden'" in output and "2 queries, 3 judgements" in output

    code, output = run("evalset", "list", "--url", server_url, "--json")
    assert code == 0, output
    assert [s["name"] for s in json.loads(output)] == ["golden", "scifact-test"]
    code, output = run("evalset", "list", "--url", server_url)
    assert code == 0 and "golden" in output and "1-2 of 2" in output
    code, output = run("evalset", "show", "golden", "--url", server_url)
    assert code == 0 and "by hand" in output

    exported = tmp_path / "out.jsonl"
    code, output = run("evalset", "export", "golden", "-o", str(exported), "--url", server_url)
    assert code == 0, output
    assert [json.loads(line) for line in exported.read_text().splitlines()] == jsonl_lines()
    code, output = run("evalset", "export", "scifact-test", "--url", server_url)
    assert code == 0, output
    graded = [json.loads(line) for line in output.splitlines()]
    assert [q["query_id"] for q in graded] == ["q1", "q2"]  # queries.jsonl order
    assert graded[0]["relevant"] == [{"object_id": "doc2", "grade": 2},
                                     {"object_id": "doc3", "grade": 1},
                                     {"object_id": "doc4", "grade": 0}]


def test_refusals_point_at_the_file_line(server_url: str, tmp_path: Path) -> None:
    lines = jsonl_lines()
    lines[1]["relevant"] = [{"object_id": "ghost", "grade": 1}]
    code, output = run("evalset", "import", "--jsonl", str(write_jsonl(tmp_path / "x.jsonl",
                       lines)), "--url", server_url)
    assert code == 1
    assert "line 2: relevant.0.object_id: unknown item 'ghost'" in output
    assert len(output.strip().splitlines()) == 1

    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(jsonl_lines()[0]) + "\n{not json\n")
    code, output = run("evalset", "import", "--jsonl", str(broken), "--url", server_url)
    assert code == 1 and "line 2: not valid JSON" in output

    source = write_jsonl(tmp_path / "ok.jsonl", jsonl_lines())
    assert run("evalset", "import", "--jsonl", str(source), "--url", server_url)[0] == 0
    code, output = run("evalset", "import", "--jsonl", str(source), "--url", server_url)
    assert code == 1 and "name 'ok' exists" in output

    code, output = run("evalset", "import", "--url", server_url)
    assert code == 2 and "--beir" in output
    code, output = run("evalset", "show", "nope", "--url", server_url)
    assert code == 1 and "not found" in output
    code, output = run("evalset", "import", "--jsonl", str(source), "--name", "other",
                       "--url", f"http://127.0.0.1:{unused_port()}")
    assert code == 1 and "cannot reach" in output and len(output.strip().splitlines()) == 1


def test_a_set_over_the_body_limit_is_explained(
    backend: Backend, tmp_path: Path
) -> None:
    settings = make_settings(backend, tmp_path / "data", max_body_bytes=4096)
    lines = [{"query_id": f"q{i}", "text": "x" * 100, "relevant": [{"object_id": "doc1"}]}
             for i in range(100)]
    source = write_jsonl(tmp_path / "big.jsonl", lines)
    with live_server(settings) as url:
        code, output = run("evalset", "import", "--jsonl", str(source), "--url", url)
    assert code == 1, output
    assert "KiB as JSON, over what the server accepts" in output
    assert "over the limit of 4096 bytes" in output and "EMBTUNE_MAX_BODY_BYTES" in output


def test_a_model_default_set_from_the_cli(server_url: str, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "golden.jsonl", jsonl_lines())
    assert run("evalset", "import", "--jsonl", str(source), "--url", server_url)[0] == 0
    with httpx.Client(base_url=server_url) as client:
        model = client.post("/api/v1/embedding-models", json={
            "name": "m", "plugin_name": "sleepy", "source": "builtin:all-MiniLM-L6-v2"}).json()
        set_id = client.get("/api/v1/evaluation-sets/golden").json()["id"]

    code, output = run("model", "evalset", model["id"], "golden", "--url", server_url)
    assert code == 0 and f"evaluation set {set_id}" in output, output
    code, output = run("model", "evalset", model["id"], "--none", "--url", server_url, "--json")
    assert code == 0 and json.loads(output)["evaluation_set_id"] is None
    code, output = run("model", "evalset", model["id"], "--url", server_url)
    assert code == 2
    code, output = run("model", "evalset", model["id"], "nope", "--url", server_url)
    assert code == 1 and "evaluation_set_id" in output
