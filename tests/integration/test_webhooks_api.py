"""`/api/v1/webhooks` on every backend: what is refused (422 naming the field, nothing
stored), the secret shown once, and the endpoint's life (update, disable, delete)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

HOOKS = "/api/v1/webhooks"
PUBLIC_URL = "https://93.184.216.34/hooks"  # a literal public address: no DNS needed

REFUSED_URLS = {
    "ftp://93.184.216.34/hooks": "http:// or https://",
    "93.184.216.34/hooks": "http:// or https://",
    "http:///hooks": "must name a host",
    "https://user:pw@93.184.216.34/hooks": "credentials",
    "http://93.184.216.34:99999/": "valid URL",
    "http://127.0.0.1:8080/hooks": "EMBTUNE_WEBHOOK_ALLOW_PRIVATE_URLS",
    "http://localhost/hooks": "EMBTUNE_WEBHOOK_ALLOW_PRIVATE_URLS",
    "http://10.1.2.3/hooks": "EMBTUNE_WEBHOOK_ALLOW_PRIVATE_URLS",
    "http://192.168.0.10/hooks": "EMBTUNE_WEBHOOK_ALLOW_PRIVATE_URLS",
    "http://169.254.169.254/latest/meta-data": "EMBTUNE_WEBHOOK_ALLOW_PRIVATE_URLS",
    "http://[::1]/hooks": "EMBTUNE_WEBHOOK_ALLOW_PRIVATE_URLS",
    "http://[::ffff:127.0.0.1]/hooks": "EMBTUNE_WEBHOOK_ALLOW_PRIVATE_URLS",
    "http://0.0.0.0/hooks": "EMBTUNE_WEBHOOK_ALLOW_PRIVATE_URLS",
    "http://100.64.0.1/hooks": "EMBTUNE_WEBHOOK_ALLOW_PRIVATE_URLS",
}


def stored(client: TestClient) -> int:
    return int(client.get(HOOKS).headers["X-Total-Count"])


def field_errors(response: httpx.Response) -> list[tuple[list, str]]:
    assert response.status_code == 422, response.text
    return [(e["loc"], e["msg"]) for e in response.json()["detail"]]


def test_bad_urls_are_refused_naming_url_with_nothing_stored(client: TestClient) -> None:
    for url, reason in REFUSED_URLS.items():
        errors = field_errors(client.post(HOOKS, json={"url": url, "events": ["task.done"]}))
        assert [loc for loc, _ in errors] == [["body", "url"]], (url, errors)
        assert reason in errors[0][1], (url, errors)
    assert stored(client) == 0


def test_unknown_events_and_bad_secrets_are_refused_with_nothing_stored(
    client: TestClient,
) -> None:
    unknown = field_errors(client.post(HOOKS, json={"url": PUBLIC_URL,
                                                    "events": ["task.done", "task.exploded"]}))
    assert unknown[0][0] == ["body", "events", 1] and "task.processing" in unknown[0][1]
    none = field_errors(client.post(HOOKS, json={"url": PUBLIC_URL, "events": []}))
    assert none[0][0] == ["body", "events"]
    for secret in ("plain-text-secret", "whsec_not*base64", "whsec_c2hvcnQ="):
        bad = field_errors(client.post(HOOKS, json={"url": PUBLIC_URL, "events": ["task.done"],
                                                    "secret": secret}))
        assert bad[0][0] == ["body", "secret"], bad
    extra = field_errors(client.post(HOOKS, json={"url": PUBLIC_URL, "events": ["task.done"],
                                                  "headers": {"x": "y"}}))
    assert extra[0][0] == ["body", "headers"]
    assert stored(client) == 0


def test_the_secret_is_shown_once_and_never_again(client: TestClient) -> None:
    created = client.post(HOOKS, json={"url": PUBLIC_URL, "events": ["task.done", "task.done"],
                                       "description": "search team"})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_") and len(endpoint["secret"]) >= 38
    assert endpoint["events"] == ["task.done"] and endpoint["enabled"]
    shown = client.get(f"{HOOKS}/{endpoint['id']}")
    listed = client.get(HOOKS)
    assert "secret" not in shown.json() and endpoint["secret"] not in shown.text
    assert endpoint["secret"] not in listed.text and listed.headers["X-Total-Count"] == "1"

    given = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"  # 24 bytes
    mine = client.post(HOOKS, json={"url": PUBLIC_URL, "events": ["alias.updated"],
                                    "secret": given})
    assert mine.status_code == 201 and mine.json()["secret"] == given


def test_update_disable_delete_and_unknown_ids(client: TestClient) -> None:
    endpoint = client.post(HOOKS, json={"url": PUBLIC_URL, "events": ["task.done"]}).json()
    path = f"{HOOKS}/{endpoint['id']}"
    changed = client.patch(path, json={"events": ["task.failed", "reindex.completed"],
                                       "description": "on call"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["events"] == ["task.failed", "reindex.completed"]
    assert changed.json()["url"] == PUBLIC_URL and changed.json()["description"] == "on call"

    refused = field_errors(client.patch(path, json={"url": "http://127.0.0.1/"}))
    assert refused[0][0] == ["body", "url"]
    assert client.get(path).json()["url"] == PUBLIC_URL  # nothing stored

    off = client.patch(path, json={"enabled": False}).json()
    assert not off["enabled"] and off["disabled_reason"] == "disabled through the API"
    assert client.get(f"{path}/deliveries").json() == []
    assert client.delete(path).status_code == 204
    for response in (client.get(path), client.delete(path), client.patch(path, json={}),
                     client.get(f"{path}/deliveries"),
                     client.post(f"{path}/deliveries/nope/redeliver")):
        assert response.status_code == 404, response.text
    assert client.get(f"{path}/deliveries", params={"status": "lost"}).status_code == 422


@pytest.mark.backends("sqlite-embedded")
def test_private_receivers_are_allowed_when_the_setting_says_so(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(run_worker=False, webhook_allow_private_urls=True)
    for url in ("http://127.0.0.1:9/hooks", "http://localhost:9/hooks", "http://10.0.0.7/x"):
        response = client.post(HOOKS, json={"url": url, "events": ["task.done"]})
        assert response.status_code == 201, (url, response.text)
    still_bad = client.post(HOOKS, json={"url": "ftp://127.0.0.1/", "events": ["task.done"]})
    assert still_bad.status_code == 422
