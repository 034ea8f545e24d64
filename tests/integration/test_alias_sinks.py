"""Aliases that serve from a vector sink, through the API on every backend: a bad sink named
field by field, every move of such an alias (set, promotion, rollback) creating its reindex in
the moving transaction and sending it after commit, and the alias's `serving` state following
the reindex from `reindexing` to `live` (or `failed`). Real runs write into the Parquet sink.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from click.testing import Result
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from embtune.cli import app as cli
from embtune.config import Settings
from embtune.domain.tasks import Task, TaskKind
from tests.conftest import events, register_model, wait_status, wait_until
from tests.support.live_server import live_server

ALIASES = "/api/v1/aliases"
TASKS = "/api/v1/fine-tuning/task"
PARQUET = {"type": "parquet"}
# A reindex in these tests runs only if its message was sent after the commit: recovery, which
# would resend a pending task never sent, waits far longer than any test.
SENT_ONLY = {"undelivered_after_s": 600.0}
WORDS = ("wool", "cotton", "red", "green", "blue", "jumper", "scarf", "boots", "cheap", "warm")


def add_items(client: TestClient, n: int = 20) -> None:
    """A tiny catalogue: cheap to encode."""
    items = [{"object_id": f"item-{i:02d}", "text": f"{WORDS[i % 10]} {WORDS[i * 3 % 10]} {i}"}
             for i in range(n)]
    assert client.post("/api/v1/items", json={"items": items}).status_code == 200


def put_alias(client: TestClient, name: str, **body: Any) -> dict[str, Any]:
    response = client.put(f"{ALIASES}/{name}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def get_alias(client: TestClient, name: str) -> dict[str, Any]:
    response = client.get(f"{ALIASES}/{name}")
    assert response.status_code == 200, response.text
    return response.json()


def reindex_task(client: TestClient, task_id: str) -> Task:
    return client.app.state.runtime.tasks.get(task_id, TaskKind.reindex)  # type: ignore[attr-defined]


def reindex_count(client: TestClient) -> int:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime.tasks.page(offset=0, limit=1, kind=TaskKind.reindex)[1]


def serving_becomes(
    client: TestClient, name: str, state: str, timeout: float = 120.0
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        alias = get_alias(client, name)
        return alias if alias["serving"]["state"] == state else None

    return wait_until(reached, timeout, 0.1)


def finished(client: TestClient, task_id: str, timeout: float = 120.0) -> Task:
    return wait_until(
        lambda: (t := reindex_task(client, task_id)).status.is_terminal and t, timeout, 0.1
    )


def error_locs(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


@pytest.mark.parametrize(
    ("sink", "field"),
    [
        ({"type": "no-such-sink"}, "type"),
        ({"name": "catalogue"}, "type"),
        ({"type": "parquet", "name": "not a name!"}, "name"),
        ({"type": "parquet", "bogus": 1}, "bogus"),
        ({"type": "parquet", "url": "nosuchproto://bucket/x"}, "url"),
    ],
)
def test_a_bad_sink_is_named_by_field_and_changes_nothing(
    client_factory: Callable[..., TestClient], sink: dict[str, Any], field: str
) -> None:
    client = client_factory(run_worker=False)
    model = register_model(client)
    created = client.put(f"{ALIASES}/production", json={"model_id": model, "sink": sink})
    assert ["body", "sink", field] in error_locs(created)
    assert client.get(f"{ALIASES}/production").status_code == 404  # not created either
    put_alias(client, "production", model_id=model)
    changed = client.put(f"{ALIASES}/production/sink", json={"sink": sink})
    assert ["body", "sink", field] in error_locs(changed)
    alias = get_alias(client, "production")
    assert alias["sink"] is None and alias["serving"]["state"] == "no_sink"
    assert reindex_count(client) == 0


def test_an_alias_without_a_sink_serves_from_none(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(run_worker=False)
    alias = put_alias(client, "staging", model_id=register_model(client))
    assert alias["sink"] is None
    assert alias["serving"] == {
        "state": "no_sink", "model_id": None, "collection": None, "reindex_task_id": None,
        "detail": alias["serving"]["detail"],
    }
    listed = client.get(ALIASES).json()
    assert listed[0]["serving"]["state"] == "no_sink" and listed[0]["sink"] is None
    assert reindex_count(client) == 0


def test_setting_only_the_sink_reindexes_once_and_leaves_the_history(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(run_worker=False)  # the tasks are only created here, never run
    model = register_model(client)
    put_alias(client, "production", model_id=model, reason="launch")
    assert client.put(f"{ALIASES}/nope/sink", json={"sink": PARQUET}).status_code == 404
    assert client.put(f"{ALIASES}/production/sink", json={}).status_code == 422  # say which

    response = client.put(f"{ALIASES}/production/sink", json={"sink": PARQUET})
    assert response.status_code == 200, response.text
    alias = response.json()
    assert alias["sink"] == {"type": "parquet", "name": "catalogue", "url": None}
    assert (alias["version"], len(alias["history"])) == (1, 1)  # not a move of the alias
    serving = alias["serving"]
    assert serving["state"] == "reindexing" and serving["model_id"] is None
    task = reindex_task(client, serving["reindex_task_id"])
    assert task.embedding_model_id == model
    assert task.params == {"sink": alias["sink"], "incremental": False, "alias": "production"}
    assert task.metadata["alias_action"] == "sink"

    # the same sink again, or a PUT of the alias that changes nothing: no second reindex
    again = client.put(f"{ALIASES}/production/sink", json={"sink": PARQUET}).json()
    assert again["serving"]["reindex_task_id"] == task.id
    same = put_alias(client, "production", model_id=model)
    assert same["sink"] == alias["sink"] and same["serving"]["reindex_task_id"] == task.id
    assert reindex_count(client) == 1

    cleared = client.put(f"{ALIASES}/production/sink", json={"sink": None}).json()
    assert cleared["sink"] is None and cleared["serving"]["state"] == "no_sink"
    assert cleared["serving"]["reindex_task_id"] == task.id  # still the newest for the alias
    assert get_alias(client, "production")["sink"] is None
    # a PUT with `"sink": null` clears it too; without `sink` it keeps it
    put_alias(client, "production", model_id=model, sink=PARQUET)
    assert put_alias(client, "production", model_id=model)["sink"] is not None
    assert put_alias(client, "production", model_id=model, sink=None)["sink"] is None
    assert reindex_count(client) == 2


def test_an_alias_set_with_a_sink_is_reindexing_then_live(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(**SENT_ONLY)
    add_items(client)
    model = register_model(client)
    alias = put_alias(client, "production", model_id=model, sink=PARQUET)
    # answered from the moving transaction: the task exists, nothing is written yet
    assert alias["serving"]["state"] == "reindexing"
    task_id = alias["serving"]["reindex_task_id"]
    task = reindex_task(client, task_id)
    assert task.params["alias"] == "production" and task.params["incremental"] is False
    assert task.embedding_model_id == model and task.metadata["alias_action"] == "set"

    live = serving_becomes(client, "production", "live")
    assert finished(client, task_id).status.value == "done"
    assert live["serving"]["model_id"] == model
    assert live["serving"]["reindex_task_id"] == task_id
    assert live["serving"]["collection"] == reindex_task(client, task_id).metrics["collection"]
    listed = client.get(ALIASES).json()
    assert listed[0]["serving"]["state"] == "live"


def test_a_promotion_to_an_alias_with_a_sink_creates_and_sends_its_reindex(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(**SENT_ONLY)
    add_items(client)
    base = register_model(client)
    put_alias(client, "production", model_id=base, sink=PARQUET)
    serving_becomes(client, "production", "live")

    created = client.post(TASKS, json={"embedding_model_id": base, "params": {
        "verdict": "better", "promote_to": "production"}})
    assert created.status_code == 201, created.text
    done = wait_status(client, created.json()["id"], "done")
    tuned = done["result_model_id"]
    promotion = done["metrics"]["promotion"]
    assert promotion["promoted"] is True
    reindex_id = promotion["reindex_task_id"]
    note = next(e for e in events(client, done["id"]) if e["kind"] == "promotion")
    assert reindex_id in note["message"]
    task = reindex_task(client, reindex_id)
    assert (task.embedding_model_id, task.params["alias"]) == (tuned, "production")
    assert task.params["incremental"] is False and task.params["sink"]["type"] == "parquet"
    assert task.metadata == {"alias_action": "promote", "alias_version": 2,
                         "actor": f"task:{done['id']}"}

    # The test plugin's "tuned model" is a text file, so its reindex cannot load it and ends
    # refused: sent after the commit (else it would never run), and the alias says so while
    # its sink keeps serving the model it served before.
    ended = finished(client, reindex_id)
    assert ended.status.value in ("refused", "failed"), ended
    alias = serving_becomes(client, "production", "failed")
    assert alias["model_id"] == tuned
    assert alias["serving"]["model_id"] == base
    assert alias["serving"]["reindex_task_id"] == reindex_id
    assert reindex_id in alias["serving"]["detail"]


def test_a_rollback_reindexes_incrementally_back_to_the_previous_model(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(**SENT_ONLY)
    add_items(client)
    first, second = register_model(client, name="first"), register_model(client, name="second")
    put_alias(client, "production", model_id=first, sink=PARQUET)
    first_live = serving_becomes(client, "production", "live")["serving"]
    put_alias(client, "production", model_id=second)  # keeps its sink: reindexed again
    assert serving_becomes(client, "production", "live")["serving"]["model_id"] == second

    response = client.post(f"{ALIASES}/production/rollback", json={"reason": "bad"})
    assert response.status_code == 200, response.text
    back = response.json()
    assert back["model_id"] == first and back["history"][0]["action"] == "rollback"
    assert back["serving"]["state"] == "reindexing"
    assert back["serving"]["model_id"] == second  # until the rollback's reindex switches
    task = reindex_task(client, back["serving"]["reindex_task_id"])
    assert (task.embedding_model_id, task.params["incremental"]) == (first, True)
    assert task.metadata["alias_action"] == "rollback"

    live = serving_becomes(client, "production", "live")["serving"]
    assert live["model_id"] == first and live["collection"] != first_live["collection"]
    metrics = finished(client, task.id).metrics
    assert metrics is not None
    # the first model's vectors came back from its retired collection, not the encoder
    assert metrics["mode"] == "incremental"
    assert metrics["previous_collection"] == first_live["collection"]
    assert (metrics["copied"], metrics["encoded"]) == (20, 0)


def embtune(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--url", url])


@pytest.mark.backends("sqlite-embedded")
def test_the_cli_shows_what_the_sink_serves(settings: Settings) -> None:
    with live_server(settings, run_worker=False) as url:
        registered = embtune(url, "model", "register", "mini", "builtin:all-MiniLM-L6-v2",
                             "--plugin", "sleepy", "--json")
        assert registered.exit_code == 0, registered.output
        model = json.loads(registered.stdout)["id"]
        assert embtune(url, "alias", "set", "staging", model).exit_code == 0
        put = httpx.put(f"{url}{ALIASES}/production",
                        json={"model_id": model, "sink": {"type": "parquet", "name": "shop"}})
        assert put.status_code == 200, put.text

        shown = embtune(url, "alias", "show", "production")
        assert shown.exit_code == 0, shown.output
        assert "reindexing" in shown.stdout and "parquet 'shop'" in shown.stdout
        assert put.json()["serving"]["reindex_task_id"] in shown.stdout
        as_json = json.loads(embtune(url, "alias", "show", "production", "--json").stdout)
        assert as_json["serving"]["state"] == "reindexing"
        listed = embtune(url, "alias", "list")
        assert listed.exit_code == 0
        assert "no_sink" in listed.stdout and "reindexing" in listed.stdout
