"""Batches as the Python client and `embtune clickstream batches` show them: each with the tasks
that name it, so a released batch no task trains on is never hidden (issue 10, item 1)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from embtune.cli import app as cli
from embtune.client import Client
from embtune.config import Settings
from tests.support.live_server import live_server

pytestmark = pytest.mark.backends("sqlite-embedded")  # an HTTP client: any backend serves it


@pytest.fixture
def url(settings: Settings) -> Iterator[str]:
    with live_server(settings, run_worker=False) as base_url:  # tasks stay pending
        yield base_url


def test_client_and_cli_list_batches_with_their_tasks_and_late_events(url: str) -> None:
    with Client(url) as api:
        api.upsert_items([{"object_id": "a", "text": "alpha"}])
        api.post_session("s1", "q", ["a"])
        api.post_session("s2", "q", ["a"])
        api.push_events("s1", [{"event_id": "e1", "object_id": "a"}])
        released = api.release_batch()["id"]
        model = api.register_model("m", "builtin:all-MiniLM-L6-v2", plugin_name="click-counter")
        task = api.create_task(model.id, batch_id=released)
        api.push_events("s2", [{"event_id": "late", "object_id": "a"}])  # after the release

        page = api.list_batches()
        assert page.total == 2
        listed = {b.id: b for b in page.items}
        assert listed[released].task_ids == [task.id]
        assert (listed[released].late_events, listed[released].clicks_count) == (1, 2)
        [still_open] = [b for b in page.items if b.id != released]
        assert (still_open.status.value, still_open.task_ids) == ("open", [])
        assert api.get_batch(released)["task_ids"] == [task.id]

    as_json = CliRunner().invoke(cli, ["clickstream", "batches", "--json", "--url", url])
    assert as_json.exit_code == 0, as_json.output
    assert [(b["id"], b["task_ids"], b["late_events"]) for b in json.loads(as_json.stdout)] == [
        (still_open.id, [], 0), (released, [task.id], 1)
    ]
    table = CliRunner().invoke(cli, ["clickstream", "batches", "--url", url])
    assert table.exit_code == 0, table.output
    [row] = [line for line in table.stdout.splitlines() if released in line]
    assert task.id in row and "released" in row
    shown = CliRunner().invoke(cli, ["clickstream", "batch", released, "--url", url])
    assert shown.exit_code == 0, shown.output
    assert task.id in shown.stdout and "late events" in shown.stdout
