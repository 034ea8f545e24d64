"""`embtune webhooks` against a live server that runs its worker, with a real receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from embtune.cli import app as cli
from tests.conftest import make_settings, wait_until
from tests.integration.test_webhooks import FAST
from tests.support.backends import Backend
from tests.support.live_server import live_server
from tests.support.webhook_receiver import WebhookReceiver, of_type, verify

pytestmark = pytest.mark.backends("sqlite-embedded")


@pytest.fixture
def url(backend: Backend, tmp_path: Path) -> Iterator[str]:
    settings = make_settings(backend, tmp_path / "data", **FAST)
    with live_server(settings, run_worker=True) as base_url:
        yield base_url


def embtune(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--url", url])


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_add_list_deliveries_redeliver_disable_enable_remove(url: str) -> None:
    with WebhookReceiver() as receiver:
        added = embtune(url, "webhooks", "add", receiver.url, "-e", "alias.updated",
                        "--description", "search team")
        assert added.exit_code == 0, added.output
        assert "secret: whsec_" in added.stdout and "not shown again" in added.stderr
        endpoint = ok_json(embtune(url, "webhooks", "list", "--json"))[0]
        secret = added.stdout.split("secret: ", 1)[1].split()[0]
        assert "secret" not in endpoint

        model = ok_json(embtune(url, "model", "register", "m", "builtin:all-MiniLM-L6-v2",
                                "--plugin", "sleepy", "--json"))["id"]
        assert embtune(url, "alias", "set", "production", model).exit_code == 0
        request = receiver.wait_for(of_type("alias.updated", name="production"))[0]
        assert verify(secret, request.headers, request.body)

        log = wait_until(lambda: ok_json(embtune(url, "webhooks", "deliveries", endpoint["id"],
                                                 "--status", "delivered", "--json")))
        table = embtune(url, "webhooks", "deliveries", endpoint["id"])
        assert table.exit_code == 0 and "delivered" in table.stdout
        assert request.id in table.stdout
        again = embtune(url, "webhooks", "redeliver", endpoint["id"], log[0]["id"])
        assert again.exit_code == 0, again.output
        receiver.wait_for(lambda r: r.id == request.id, count=2)

        listed = embtune(url, "webhooks", "list")
        assert listed.exit_code == 0 and endpoint["id"] in listed.stdout
        assert "1-1 of 1" in listed.stdout
        off = embtune(url, "webhooks", "disable", endpoint["id"])
        assert off.exit_code == 0 and "disabled" in off.stdout
        on = ok_json(embtune(url, "webhooks", "enable", endpoint["id"], "--json"))
        assert on["enabled"] is True
        shown = embtune(url, "webhooks", "show", endpoint["id"])
        assert "search team" in shown.stdout and secret not in shown.stdout
        assert embtune(url, "webhooks", "remove", endpoint["id"]).exit_code == 0
        gone = embtune(url, "webhooks", "show", endpoint["id"])
        assert gone.exit_code == 1 and "not found" in gone.stderr


def test_an_unknown_event_is_refused_naming_the_field(url: str) -> None:
    refused = embtune(url, "webhooks", "add", "http://127.0.0.1:9/x", "-e", "task.exploded")
    assert refused.exit_code == 1 and "events.0" in refused.stderr
    assert ok_json(embtune(url, "webhooks", "list", "--json")) == []
